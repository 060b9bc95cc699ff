"""Ctrl-C in the middle of a study, then the same command again: finished trials are not rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_overrides

from medguna.study.runner import saved_trials

pytestmark = pytest.mark.slow

RUN = Path(__file__).resolve().parents[2] / "studies" / "run.py"


def _completed(exp: Path) -> dict[str, int]:
    """Trial folder -> number of result rows, for trials whose last row says completed."""
    done = {}
    for result in exp.glob("t0*/result.json"):
        lines = result.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("status") == "completed":
            done[result.parent.name] = len(lines)
    return done


def _saved_as_finished(exp: Path) -> dict[str, int]:
    """Like _completed, for the trials Tune's saved experiment state calls TERMINATED: resume
    skips exactly these. A trial that wrote its last row a moment before Ctrl-C but was saved as
    RUNNING is restored from its checkpoint and runs again (Tune's rule, not medguna's)."""
    terminated = {t["relative_logdir"] for t in saved_trials(str(exp)) or [] if t["status"] == "TERMINATED"}
    return {name: rows for name, rows in _completed(exp).items() if name in terminated}


def test_interrupted_study_resumes_without_rerunning_finished_trials(tmp_path, shared_cache):
    args = [sys.executable, str(RUN), "--study", "fundus", "--no-report",
            *tiny_overrides(tmp_path, shared_cache), "study.demo_num_samples=4",
            "resources.max_concurrent_trials=1",
            # Trials now differ, so ASHA may stop one early; this test is about resuming.
            "search.scheduler=none"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    exp = tmp_path / "runs" / "fundus" / "idrid"
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not _saved_as_finished(exp) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    assert _saved_as_finished(exp), "no trial finished before the deadline"
    first.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out[-3000:]
    assert "Run the same command again to resume" in out
    finished = _saved_as_finished(exp)
    mtimes = {name: (exp / name / "result.json").stat().st_mtime_ns for name in finished}
    assert len(finished) < 4

    second = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming the interrupted experiment" in second.stdout
    # The resumed run shows medguna's progress (not Ray's tables), counting the trials finished
    # before Ctrl-C as well.
    assert "[idrid] [############] 4/4 finished | " in second.stdout
    assert "Trial status" not in second.stdout and "== Status ==" not in second.stdout
    final = _completed(exp)
    assert len(final) == 4
    for name, rows in finished.items():  # untouched: same rows, same file
        assert final[name] == rows
        assert (exp / name / "result.json").stat().st_mtime_ns == mtimes[name]
    assert (exp / "medguna_complete.json").is_file()
    # The Optuna database written as the trials ran survives the kill and the resume: every trial
    # once, completed, with each epoch's value and a start before its completion.
    import optuna

    stored = optuna.load_study(study_name="fundus-idrid", storage=f"sqlite:///{exp / 'optuna.db'}").trials
    assert sorted(t.user_attrs["medguna_trial"] for t in stored) == sorted(n.split("_")[0] for n in final)
    for t in stored:
        assert t.state == optuna.trial.TrialState.COMPLETE, (t.number, t.state)
        assert sorted(t.intermediate_values) == [1, 2] and t.datetime_start < t.datetime_complete
