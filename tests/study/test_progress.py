"""The study's progress display, driven through Tune's callback hooks with stand-in trials."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

import pytest

from medguna.study.progress import (
    Counts,
    StudyProgress,
    clock,
    progress_bar,
    quiet_libraries,
    remaining_seconds,
)

SEARCHED = ["adapter_width", "entropy_weight"]


def trial(n: int, status: str, *, objective=None, done=False, epoch=2, error_file=None):
    row = {"epoch": epoch, "objective_best_so_far": objective, "zeroshot_val_balanced_accuracy": 0.5,
           "test_balanced_accuracy": 0.61}
    if done:
        row["status"] = "completed"
    return SimpleNamespace(trial_id=f"id{n}", status=status, last_result=row if objective is not None else {},
                           config={"adapter_width": 64 * n, "entropy_weight": 0.25 * n, "seed": 1},
                           path=f"/runs/study/montgomery/t{n:04d}_id{n}", error_file=error_file)


def display(stream, tty=False, total=4):
    return StudyProgress("montgomery", total, SEARCHED, metric="objective_best_so_far",
                         objective="val_balanced_accuracy", epochs=2, stream=stream, tty=tty)


def test_bar_clock_and_time_left():
    assert progress_bar(Counts(completed=2, stopped_early=1, failed=1, running=2), 8, width=8) == "[##=!~~..]"
    assert progress_bar(Counts(), 3, width=6) == "[......]"
    assert clock(75) == "1:15" and clock(3725) == "1:02:05"
    assert remaining_seconds(60.0, 2, 8) == pytest.approx(180.0)  # 30 s a trial, 6 to go
    assert remaining_seconds(60.0, 0, 8) is None and remaining_seconds(60.0, 8, 8) == 0.0


def test_plain_lines_count_outcomes_and_name_the_best_trial(tmp_path):
    out = io.StringIO()
    progress = display(out)
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  ...\nTrialError: loss became NaN at epoch 1\n")
    t1 = trial(1, "TERMINATED", objective=0.7, done=True)
    t2 = trial(2, "RUNNING", objective=0.9, epoch=1)  # to be stopped early by ASHA: never "best"
    t3 = trial(3, "RUNNING", objective=0.95, error_file=str(error))
    t4 = trial(4, "RUNNING", objective=0.6)
    trials = [t1, t2, t3, t4]
    progress.on_trial_complete(1, trials, t1)
    t2.status = "TERMINATED"
    progress.on_trial_complete(2, trials, t2)
    t3.status = "ERROR"
    progress.on_trial_error(3, trials, t3)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("[montgomery] t0001_id1 completed     val_balanced_accuracy 0.700 after epoch 2/2, "
                        "test 0.610 | adapter_width=64, entropy_weight=0.25")
    assert lines[3].startswith("[montgomery] t0002_id2 stopped early val_balanced_accuracy 0.900 after epoch 1/2")
    assert lines[6].startswith("[montgomery] t0003_id3 failed        TrialError: loss became NaN at epoch 1 |")
    assert lines[7] == ("[montgomery] [######======!!!!!!~~~~~~] 3/4 finished | 0:00 elapsed, ~0:00 left "
                        "| 1 completed, 1 stopped early, 1 failed, 1 running")
    assert lines[8] == ("[montgomery]   best val_balanced_accuracy 0.700 (t0001_id1: adapter_width=64, "
                        "entropy_weight=0.25); zero-shot 0.500")
    # Nothing new to say: the experiment's end repeats no status; results alone print nothing.
    progress.on_experiment_end(trials)
    progress.on_trial_result(4, trials, t4, {})
    assert len(out.getvalue().splitlines()) == 9


def test_terminal_redraws_the_status_in_place(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lines are cut to the terminal's width
    out = io.StringIO()
    progress = display(out, tty=True, total=2)
    t1, t2 = trial(1, "RUNNING", objective=0.5), trial(2, "PENDING")
    progress.on_trial_start(1, [t1, t2], t1)
    t2.status = "RUNNING"
    progress.on_trial_start(2, [t1, t2], t2)
    progress.on_trial_result(3, [t1, t2], t1, {})  # within a second of the last redraw: none
    first, second = out.getvalue().split("\x1b[1A")
    assert "0/2 finished" in first and "1 running" in first and "no completed trial yet" in first
    assert second.startswith("\r\x1b[2K") and "2 running" in second
    t1.status, t1.last_result["status"] = "TERMINATED", "completed"
    progress.on_trial_complete(4, [t1, t2], t1)
    progress.on_experiment_end([t1, t2])
    assert out.getvalue().endswith("\n") and "t0001_id1 completed" in out.getvalue()
    monkeypatch.setenv("COLUMNS", "41")
    progress.on_trial_start(5, [t1, t2], t2)
    assert out.getvalue().splitlines()[-1] == "[montgomery]   best val_balanced_accurac"


def test_pickles_without_its_stream_for_resume():
    # Tune pickles the run config and its callbacks into tuner.pkl; a stream cannot be pickled.
    progress = pickle.loads(pickle.dumps(display(io.StringIO())))
    assert (progress.dataset, progress.total, progress.searched) == ("montgomery", 4, SEARCHED)
    assert progress.stream is not None and progress._outcomes == {}


def test_quiet_libraries_drops_only_the_token_auth_notice(caplog):
    import logging

    import optuna

    quiet_libraries()
    quiet_libraries()  # idempotent: one filter
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=...")
        logger.warning("Token authentication is disabled for this Ray cluster. Anyone with ...")
    assert [r.getMessage()[:38] for r in caplog.records] == ["Token authentication is disabled for t"]
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING


def test_verbose_gives_ray_its_console_back(tmp_path, monkeypatch):
    import os

    from medguna.compose import compose_study
    from medguna.study.progress import ray_console
    from medguna.study.runner import _callbacks, plan_study
    from medguna.study.tensorboard import ScalarsOnlyTBXLogger

    plan = plan_study(compose_study(["study=chestxray", "study.datasets=[montgomery]",
                                     f"storage.path={tmp_path}", f"storage.cache_dir={tmp_path}"]))
    quiet = _callbacks(plan, plan.datasets[0], verbose=False)
    assert [type(c) for c in quiet] == [ScalarsOnlyTBXLogger, StudyProgress]
    assert (quiet[1].dataset, quiet[1].total) == ("montgomery", plan.datasets[0].num_samples)
    assert [type(c) for c in _callbacks(plan, plan.datasets[0], verbose=True)] == [ScalarsOnlyTBXLogger]
    # Ray's default console prints its own boxes even at verbosity 0; the legacy one prints nothing.
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    with ray_console(verbose=False):
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    with ray_console(verbose=True):
        assert "RAY_AIR_NEW_OUTPUT" not in os.environ
