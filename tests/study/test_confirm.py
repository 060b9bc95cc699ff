"""The confirmation stage: a study's best configurations rerun with fresh seeds under Ray Tune."""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path

import polars as pl
import pytest
from conftest import tiny_overrides

from medguna.analysis.loading import load_results
from medguna.analysis.report import build_report
from medguna.compose import compose_study
from medguna.study.confirm import (
    best_configurations,
    confirm_plan,
    confirmation_points,
    confirmation_space,
)
from medguna.study.runner import COMPLETE_MARKER, run_study

SEEDS = [7778, 7779, 7780]  # method.seed 7777 + 1..3


def test_best_configurations_skip_unfinished_and_repeated_configurations():
    results = [
        ({"status": "completed", "objective_selected": 0.6}, {"adapter_width": 0, "seed": 1, "dataset": "x"}),
        ({"epoch": 1, "objective_selected": 0.99}, {"adapter_width": 8, "seed": 1}),  # stopped early
        ({"status": "completed", "objective_selected": 0.7}, {"adapter_width": 64, "seed": 1}),
        ({"status": "completed", "objective_selected": 0.65}, {"adapter_width": 64, "seed": 2}),  # same config
        ({"status": "completed", "objective_selected": float("nan")}, {"adapter_width": 128, "seed": 1}),
    ]
    assert best_configurations(results, 2) == [{"adapter_width": 64}, {"adapter_width": 0}]
    plan = confirm_plan(2, 3, 7777)
    assert plan.seeds == SEEDS and confirm_plan(0, 3, 7777) is None
    points = confirmation_points([{"adapter_width": 64}, {"adapter_width": 0}], plan.seeds)
    assert [(p["adapter_width"], p["seed"]) for p in points] == [(64, s) for s in SEEDS] + [(0, s) for s in SEEDS]
    space = confirmation_space([{**p, "dataset": "montgomery"} for p in points])
    assert space["dataset"] == "montgomery"  # the same in every point: a constant
    assert space["seed"].categories == SEEDS and space["adapter_width"].categories == [64, 0]
    assert all(space["seed"].is_valid(p["seed"]) for p in points)  # so Tune has nothing to warn about


def test_run_py_flags_set_the_confirmation_for_both_budgets(monkeypatch):
    import importlib.util

    from medguna.study import runner

    seen = {}

    def fake_run_study(cfg, **kwargs):
        seen["study"] = cfg.study
        raise runner.StudyInterrupted("stop before Ray")

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    spec = importlib.util.spec_from_file_location("run_py", Path(__file__).parents[2] / "studies" / "run.py")
    run_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_py)
    assert run_py.main(["--study", "fundus", "--confirm-top", "2", "--seeds", "4"]) == 130
    s = seen["study"]
    assert (s.confirm_top, s.confirm_seeds, s.demo_confirm_top, s.demo_confirm_seeds) == (2, 4, 2, 4)


@pytest.mark.slow
def test_confirm_top_2_with_3_seeds_gives_3_rows_per_configuration(tmp_path, shared_cache, local_ray, capsys):
    overrides = [o for o in tiny_overrides(tmp_path, shared_cache)
                 if not o.startswith(("search.space.prompt_length", "study.demo_confirm"))]
    cfg = compose_study(["study=chestxray", "study.datasets=[montgomery]", "study.demo_num_samples=2",
                         *overrides, "search.space.prompt_length.choices=[0]", "search.scheduler=none",
                         "study.demo_confirm_top=2", "study.demo_confirm_seeds=3"])
    lines: list[str] = []
    # Tune's variant generator warns for each preset point its param_space does not hold.
    tune_warnings = logging.handlers.BufferingHandler(capacity=1000)
    variant_logger = logging.getLogger("ray.tune.search.variant_generator")
    variant_logger.addHandler(tune_warnings)
    try:
        plan = run_study(cfg, log=lines.append)
    finally:
        variant_logger.removeHandler(tune_warnings)
    assert not [r.getMessage() for r in tune_warnings.buffer if "Pre-set value" in r.getMessage()]
    # The confirmation shows medguna's progress display, as the search does, not Ray's own console.
    console = capsys.readouterr().out
    assert "[montgomery_confirm] [############] 6/6 finished" in console
    assert "Configuration for experiment" not in console and "To visualize your results" not in console
    study_dir = Path(plan.study_dir)
    confirm_dir = study_dir / "montgomery_confirm"
    assert (confirm_dir / COMPLETE_MARKER).is_file()
    saved = json.loads((confirm_dir / "confirm_plan.json").read_text())
    assert saved["seeds"] == SEEDS and len(saved["points"]) == 6

    results = load_results(study_dir, progress=False)
    confirm = results.trials.filter(pl.col("stage") == "confirm")
    assert confirm.height == 6 and (confirm["trial_status"] == "completed").all()
    assert confirm["trial"].str.starts_with("confirm/t").all()
    assert sorted(confirm["seed"].to_list()) == sorted(SEEDS * 2)
    # Both search trials completed, so both configurations are confirmed.
    search = results.trials.filter(pl.col("stage") == "search")
    assert search.height == 2
    assert set(confirm["entropy_weight"].to_list()) == set(search["entropy_weight"].to_list())

    report = build_report(results, tmp_path / "analysis")
    confirmed = report.tables["leaderboard_confirmed"]
    assert confirmed.height == 2 and confirmed["n"].to_list() == [3, 3]
    # Ranked by mean validation objective (ties share a rank: the demo model scores at chance).
    by_rank = confirmed.sort("rank")
    assert by_rank["rank"][0] == 1 and by_rank["objective_mean"].is_sorted(descending=True)
    for row in confirmed.iter_rows(named=True):
        assert row["seeds"] == ", ".join(str(s) for s in SEEDS)
        low, mean, high = (row[f"test_balanced_accuracy_{k}"] for k in ("low_seeds", "mean", "high_seeds"))
        # 3 seeds: their range (no t interval), inside [0, 1] by construction.
        assert 0 <= low <= mean <= high <= 1 and row["interval_over_seeds"] == "range"
    assert report.tables["seeds"].height == 2  # never empty once confirmation ran
    # Search leaderboard: the 2 search trials only, each with a test interval and a verdict.
    board = report.tables["leaderboard_montgomery"]
    assert board.height == 2
    assert board["test_balanced_accuracy_ci95_test_images_low"].null_count() == 0
    assert set(board["vs_zeroshot_verdict"].to_list()) <= {"better", "worse", "not distinguishable"}
    figures = {path.name for path in report.figures}
    assert {"reliability_montgomery_synthetic-demo.png", "pareto_montgomery_synthetic-demo.png"} <= figures

    # The confirmation is a study of its own in the dataset's optuna.db, beside the search's.
    import optuna

    database = f"sqlite:///{study_dir / 'montgomery' / 'optuna.db'}"
    assert set(optuna.get_all_study_names(database)) == {"chestxray-montgomery", "chestxray-montgomery-confirm"}
    reruns = optuna.load_study(study_name="chestxray-montgomery-confirm", storage=database).trials
    assert len(reruns) == 6 and sorted(t.user_attrs["seed"] for t in reruns) == sorted(SEEDS * 2)
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.datetime_start < t.datetime_complete
               for t in reruns)
    assert {t.user_attrs["tensorboard_run"].split("/")[0] for t in reruns} == {"montgomery_confirm"}

    again: list[str] = []
    run_study(cfg, log=again.append)
    assert any("confirmation already complete" in line for line in again)
