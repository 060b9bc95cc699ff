"""Parameter importance from the exported Optuna study, full-budget trials only."""

from __future__ import annotations

import pytest

from medguna.analysis.importance import param_importance


def test_importance_over_full_budget_trials(hand_results):
    result = param_importance(hand_results.studies[0], "shenzhen")
    table = result.table
    assert set(table["param"]) == {
        "adapter_width",
        "prompt_length",
        "entropy_weight",
        "description_source",
    }
    assert table["n_trials"].to_list() == [5] * 4  # stopped-early and failed trials left out
    assert sum(table["importance"]) == pytest.approx(1.0)
    assert "noisy" in result.note


def test_skipped_with_a_note(hand_results):
    too_few = param_importance(hand_results.studies[0], "montgomery")
    assert too_few.table.height == 0
    assert "1 complete full-budget trial(s)" in too_few.note and "need at least 2" in too_few.note
    missing = param_importance(hand_results.studies[0], "guangzhou")
    assert missing.table.height == 0 and "no Optuna export" in missing.note


def test_constant_objective_is_skipped_not_crashed(tmp_path):
    import json

    from analysis_fixtures import write_optuna_db

    from medguna.analysis.study_info import read_study_info

    study_dir = tmp_path / "flat"
    (study_dir / "shenzhen").mkdir(parents=True)
    (study_dir / "study.json").write_text(json.dumps({
        "study": "flat", "datasets": ["shenzhen"], "objective": "val_balanced_accuracy", "mode": "max",
        "data_source": {"shenzhen": "real"}, "encoder": "medclip-vit", "checkpoint": "/m"}))
    configs = [{"adapter_width": w, "prompt_length": p, "entropy_weight": e, "description_source": "llm"}
               for w, p, e in ((0, 0, 0.5), (64, 8, 1.0), (128, 32, 1.5))]
    write_optuna_db(study_dir, "shenzhen", [
        {"config": c, "value": 0.5, "outcome": "completed", "trial_id": f"t{i}"} for i, c in enumerate(configs)])
    result = param_importance(read_study_info(study_dir), "shenzhen")
    assert result.table.height == 0
    assert "the objective is the same (0.5) in all 3 full-budget trials" in result.note
