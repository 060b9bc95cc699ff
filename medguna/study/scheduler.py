"""The search's early stopping: ASHA, except for the trial at the paper's hyperparameters.

That trial is every leaderboard's ★ baseline: the selected configuration's verdict against it is
made on test predictions, which only a trial run to completion has. So ASHA still records its
results (they set the rungs' cutoffs for the others) but never stops it before its last epoch.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from medguna.results import PAPER_POINT


class PaperPointASHA(AsyncHyperBandScheduler):
    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get(PAPER_POINT) and result.get(self._time_attr, 0) < self._max_t:
            self._num_stopped -= 1  # counted as stopped by ASHA; it goes on
            return TrialScheduler.CONTINUE
        return action
