"""The live sampler: an ASHA-stopped trial reaches Optuna as PRUNED, a failed one FAIL (the database
users open is written by medguna.study.optuna_storage, tests/study/test_optuna_storage.py)."""

from __future__ import annotations

import optuna
import pytest

from medguna.study.searcher import StudySearch

SPACE = {"entropy_weight": {"type": "float", "low": 0.1, "high": 2.0}}


@pytest.fixture
def searcher():
    from medguna.study.space import define_by_run

    return StudySearch(define_by_run(SPACE, {}), metric="objective_best_so_far", mode="max", seed=0,
                       study_name="s-montgomery")


def _run(searcher, trial_id: str, rows: list[dict], error: bool = False) -> None:
    assert searcher.suggest(trial_id) is not None
    reported = [{"training_iteration": epoch, "epoch": epoch, **row} for epoch, row in enumerate(rows, start=1)]
    for row in reported:
        searcher.on_trial_result(trial_id, row)
    searcher.on_trial_complete(trial_id, result=reported[-1] if reported else None, error=error)


def test_stopped_early_is_pruned_finished_is_complete_failed_is_fail(searcher):
    _run(searcher, "a", [{"objective_best_so_far": 0.7}])  # ASHA stopped it after epoch 1 of 2
    searcher.suggest("b")  # still running when the next ones finish
    searcher.on_trial_result("b", {"training_iteration": 1, "epoch": 1, "objective_best_so_far": 0.3})
    _run(searcher, "c", [{"objective_best_so_far": 0.5}, {"objective_best_so_far": 0.6, "status": "completed"}])
    _run(searcher, "d", [{"objective_best_so_far": 0.4}], error=True)

    trials = searcher._ot_study.trials  # what TPE samples from
    state = optuna.trial.TrialState
    assert [t.state for t in trials] == [state.PRUNED, state.RUNNING, state.COMPLETE, state.FAIL]
    # Optuna keeps a pruned trial's last intermediate value; TPE ranks pruned trials below finished ones.
    assert trials[0].intermediate_values == {1: 0.7}
    assert trials[0].user_attrs == {"outcome": "stopped_early", "epoch": 1}
    assert trials[2].value == 0.6 and trials[3].user_attrs["outcome"] == "failed"
