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
