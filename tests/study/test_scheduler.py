"""ASHA stops trials below a rung's cutoff, except the paper's point, which every leaderboard
compares the selected trial with on test and so must complete."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from medguna.results import OBJECTIVE_BEST_SO_FAR, PAPER_POINT
from medguna.study.scheduler import PaperPointASHA


def _decisions(scheduler_class) -> dict[str, str]:
    # Two epochs, a rung after epoch 1 keeping the better half: with 0.9 already in the rung, a
    # trial at 0.1 is below the cutoff and ASHA stops it.
    scheduler = scheduler_class(time_attr="epoch", metric=OBJECTIVE_BEST_SO_FAR, mode="max",
                                max_t=2, grace_period=1, reduction_factor=2)
    trials = {name: SimpleNamespace(trial_id=name) for name in ("leader", "paper", "other")}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    results = {"leader": (0.9, False), "paper": (0.1, True), "other": (0.1, False)}
    decisions = {}
    for name, (value, paper) in results.items():
        result = {"epoch": 1, OBJECTIVE_BEST_SO_FAR: value, PAPER_POINT: paper}
        decisions[name] = scheduler.on_trial_result(None, trials[name], result)
    last = {"epoch": 2, OBJECTIVE_BEST_SO_FAR: 0.1, PAPER_POINT: True}
    decisions["paper at its last epoch"] = scheduler.on_trial_result(None, trials["paper"], last)
    decisions["stopped"] = scheduler._num_stopped
    return decisions


def test_asha_alone_stops_the_paper_point_below_the_cutoff():
    decisions = _decisions(AsyncHyperBandScheduler)
    assert decisions["paper"] == decisions["other"] == TrialScheduler.STOP


def test_the_paper_point_runs_to_its_last_epoch_and_the_others_are_still_stopped():
    decisions = _decisions(PaperPointASHA)
    assert decisions["leader"] == TrialScheduler.CONTINUE
    assert decisions["paper"] == TrialScheduler.CONTINUE
    assert decisions["other"] == TrialScheduler.STOP
    # At max_t ASHA's own rule applies to every trial: the last epoch ends it.
    assert decisions["paper at its last epoch"] == TrialScheduler.STOP
    assert decisions["stopped"] == 2  # "other", and the paper's point at its end; not its epoch 1
