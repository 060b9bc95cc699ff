"""Which trials of an experiment still have to run, read from the state Tune saved for resume."""

from __future__ import annotations

import json

from medguna.study.tune_state import saved_trial_statuses, saved_trials, unfinished_trials


def _write_state(exp, stamp: str, statuses: list[str]) -> None:
    trial_data = [[json.dumps({"trial_id": f"t{i}", "status": s, "relative_logdir": f"t{i:04d}_x"}),
                   json.dumps({"num_failures": 0})]
                  for i, s in enumerate(statuses)]
    (exp / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": trial_data}))


def test_a_trial_saved_as_running_is_unfinished_whatever_memory_says(tmp_path):
    # Ctrl-C while the last trial ran: Tune saved it as RUNNING, while its in-memory record (the
    # second argument's role) may already say TERMINATED. The saved state decides.
    _write_state(tmp_path, "2026-11-26_01-35-13", ["TERMINATED", "RUNNING", "TERMINATED"])
    assert saved_trial_statuses(str(tmp_path)) == ["TERMINATED", "RUNNING", "TERMINATED"]
    assert unfinished_trials(str(tmp_path), None, 3) == 1
    assert [(t["relative_logdir"], t["status"]) for t in saved_trials(str(tmp_path))] == [
        ("t0000_x", "TERMINATED"), ("t0001_x", "RUNNING"), ("t0002_x", "TERMINATED")]


def test_failed_trials_count_as_finished_and_missing_ones_as_unfinished(tmp_path):
    _write_state(tmp_path, "2026-11-26_01-35-13", ["TERMINATED", "ERROR"])
    assert unfinished_trials(str(tmp_path), None, 2) == 0
    assert unfinished_trials(str(tmp_path), None, 4) == 2  # two never generated before the stop


def test_the_newest_state_file_wins(tmp_path):
    _write_state(tmp_path, "2026-11-26_01-35-13", ["TERMINATED", "RUNNING"])
    _write_state(tmp_path, "2026-11-26_02-10-00", ["TERMINATED", "TERMINATED"])  # after a resume
    assert unfinished_trials(str(tmp_path), None, 2) == 0


def test_without_a_saved_state_the_in_memory_statuses_are_used(tmp_path):
    from types import SimpleNamespace

    trials = [SimpleNamespace(status="TERMINATED"), SimpleNamespace(status="PENDING")]
    results = SimpleNamespace(_experiment_analysis=SimpleNamespace(trials=trials))  # Tune's shape
    assert saved_trial_statuses(str(tmp_path)) is None
    assert unfinished_trials(str(tmp_path), results, 2) == 1


def test_a_dataset_whose_trials_all_failed_is_not_complete(tmp_path):
    from medguna.study.tune_state import all_failed, completed_samples

    _write_state(tmp_path, "2026-11-26_01-35-13", ["ERROR", "ERROR"])
    assert all_failed(str(tmp_path))
    _write_state(tmp_path, "2026-11-26_02-00-00", ["ERROR", "TERMINATED"])
    assert not all_failed(str(tmp_path))
    assert completed_samples(str(tmp_path)) == 0  # no marker
    (tmp_path / "medguna_complete.json").write_text(json.dumps({"counts": {"full": 2, "failed": 1}}))
    assert completed_samples(str(tmp_path)) == 3  # a marker from before the count was recorded
    (tmp_path / "medguna_complete.json").write_text(json.dumps({"counts": {"full": 3}, "num_samples": 3}))
    assert completed_samples(str(tmp_path)) == 3
