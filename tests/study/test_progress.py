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
    fit_block,
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


def test_plain_lines_count_outcomes_and_name_the_best_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # an 80-column terminal: every line fits in 79
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
    assert max(len(line) for line in lines) <= 79
    # A finished trial: its outcome, then its hyperparameters on an indented continuation line.
    assert lines[:2] == ["[montgomery] t0001_id1 completed     val_balanced_accuracy 0.700 after epoch",
                         "               2/2, test 0.610 | adapter_width=64, entropy_weight=0.25"]
    assert lines[6].startswith("[montgomery] t0002_id2 stopped early val_balanced_accuracy 0.900 after epoch")
    assert lines[12].startswith("[montgomery] t0003_id3 failed        TrialError: loss became NaN at epoch 1")
    assert lines[14:] == [
        "[montgomery] [###===!!!~~~] 3/4 finished | 0:00 elapsed, ~0:00 left",
        "[montgomery]   1 completed, 1 stopped early, 1 failed, 1 running",
        "[montgomery]   best val_balanced_accuracy 0.700 (t0001_id1; zero-shot 0.500):",
        "               adapter_width=64, entropy_weight=0.25",
    ]
    # Nothing new to say: the experiment's end repeats no status; results alone print nothing.
    progress.on_experiment_end(trials)
    progress.on_trial_result(4, trials, t4, {})
    assert len(out.getvalue().splitlines()) == 18


def test_every_line_fits_80_columns_with_long_names(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    progress = StudyProgress("montgomery_confirm", 32, ["adapter_width", "entropy_weight", "prompt_length",
                                                         "description_source"],
                             metric="objective_best_so_far", objective="val_information_maximization", epochs=2,
                             stream=out, tty=False)
    t1 = trial(1, "TERMINATED", objective=0.7, done=True)
    t1.config.update(prompt_length=113, description_source="set:gpt-4o-mini-2024-07-18-generic")
    progress.on_trial_complete(1, [t1, trial(2, "PENDING")], t1)
    progress.on_experiment_end([t1, trial(2, "PENDING")])
    text = out.getvalue()
    assert text and max(len(line) for line in text.splitlines()) <= 79
    # Wrapping keeps every word: the lines joined say what one unwrapped line said.
    joined = " ".join(line.strip() for line in text.splitlines())
    assert "description_source=set:gpt-4o-mini-2024-07-18-generic" in joined
    assert "time left" not in joined and "~" in joined  # one trial finished: an estimate


def test_the_end_of_study_leaderboard_fits_80_columns_under_its_headings():
    text = ("shenzhen [SYNTHETIC DATA + DEMONSTRATION ENCODER (not MedCLIP) — not a real result]: 1 completed,"
            " 2 stopped_early; zero-shot test 0.650; 0 of 1 completed trials kept stage 1 alone\n"
            "  #1 t0002_4ecec091: test 0.833 [95% CI over test images 0.762, 0.905] (+0.183, better"
            " (p=0.0213, 42 discordant) vs zero-shot), val 0.853 [adapter_width=64, prompt_length=32]\n"
            "  short line")
    lines = fit_block(text, 79).splitlines()
    assert max(len(line) for line in lines) <= 79
    assert lines[0].startswith("shenzhen [SYNTHETIC") and lines[1].startswith("    ") and not lines[1].startswith("     ")
    row = next(i for i, line in enumerate(lines) if line.startswith("  #1 "))
    assert lines[row + 1].startswith("      ") and lines[-1] == "  short line"
    assert " ".join(line.strip() for line in lines).split() == text.split()  # nothing lost or cut


def test_terminal_redraws_the_status_in_place(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    progress = display(out, tty=True, total=2)
    t1, t2 = trial(1, "RUNNING", objective=0.5), trial(2, "PENDING")
    progress.on_trial_start(1, [t1, t2], t1)
    t2.status = "RUNNING"
    progress.on_trial_start(2, [t1, t2], t2)
    progress.on_trial_result(3, [t1, t2], t1, {})  # within a second of the last redraw: none
    first, second = out.getvalue().split("\r\x1b[2K\x1b[1A\r\x1b[2K\x1b[1A\r\x1b[2K")  # 3 lines erased
    assert "0/2 finished" in first and "1 running" in first and "no completed trial yet" in first
    assert "2 running" in second
    t1.status, t1.last_result["status"] = "TERMINATED", "completed"
    progress.on_trial_complete(4, [t1, t2], t1)
    progress.on_experiment_end([t1, t2])
    assert out.getvalue().endswith("\n") and "t0001_id1 completed" in out.getvalue()
    monkeypatch.setenv("COLUMNS", "41")  # lines are wrapped to the terminal's width, less one column
    before = len(out.getvalue())
    progress.on_trial_start(5, [t1, t2], t2)
    drawn = out.getvalue()[before:].split("\n")
    assert max(len(line) for line in drawn) <= 40 and drawn[-1].strip() == "entropy_weight=0.25"


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

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from medguna.compose import compose_study
    from medguna.study.experiment import callbacks
    from medguna.study.optuna_storage import OptunaRecorder
    from medguna.study.plan import plan_study
    from medguna.study.progress import ray_console

    plan = plan_study(compose_study(["study=chestxray", "study.datasets=[montgomery]",
                                     f"storage.path={tmp_path}", f"storage.cache_dir={tmp_path}"]))
    quiet = callbacks(plan, plan.datasets[0], verbose=False)
    # result.json and progress.csv, the live Optuna record, and no TensorBoard logger of Ray's
    # (trials write their own events).
    assert [type(c) for c in quiet] == [JsonLoggerCallback, CSVLoggerCallback, OptunaRecorder, StudyProgress]
    assert (quiet[3].dataset, quiet[3].total) == ("montgomery", plan.datasets[0].num_samples)
    assert [type(c) for c in callbacks(plan, plan.datasets[0], verbose=True)] == [
        JsonLoggerCallback, CSVLoggerCallback, OptunaRecorder]
    # Ray's default console prints its own boxes even at verbosity 0; the legacy one prints nothing.
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    with ray_console(verbose=False):
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    with ray_console(verbose=True):
        assert "RAY_AIR_NEW_OUTPUT" not in os.environ
