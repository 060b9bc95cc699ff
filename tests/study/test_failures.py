"""A trial that fails on its input is not rerun by Tune's retries; other failures still are."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medguna.config import TrialConfig, to_dict
from medguna.errors import DataError, TrialError
from medguna.study import trainable
from medguna.study.failures import MARKER, InputErrorNotRetried


@pytest.fixture
def trial(tmp_path, monkeypatch):
    """medguna_trainable as Tune calls it (first attempt, then a retry), with a run_trial stand-in."""
    from ray import tune

    from medguna.trial import loop

    calls = []
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_dir=lambda: str(tmp_path)))

    def attempt(error: Exception) -> None:
        def run_trial(cfg, reporter, log_dir, params):
            calls.append(log_dir)
            raise error

        monkeypatch.setattr(loop, "run_trial", run_trial)
        trainable.medguna_trainable({"entropy_weight": 1.0}, base=to_dict(TrialConfig()), study="s",
                                 code_version="test")

    return attempt, calls


def test_a_retry_after_an_input_error_fails_at_once_with_the_same_reason(trial, tmp_path):
    attempt, calls = trial
    bad = DataError("cannot decode image /data/x.png: truncated; replace or delete the file")
    with pytest.raises(DataError):
        attempt(bad)
    assert (tmp_path / MARKER).read_text() == f"DataError: {bad}\n"
    with pytest.raises(InputErrorNotRetried, match=r"DataError: cannot decode image /data/x.png.*not retried"):
        attempt(bad)
    assert len(calls) == 1  # the retry did no work


def test_a_diverged_trial_is_still_retried(trial, tmp_path):
    attempt, calls = trial
    for _ in range(2):
        with pytest.raises(TrialError):
            attempt(TrialError("loss became NaN at epoch 2"))
    assert len(calls) == 2 and not (tmp_path / MARKER).exists()
