"""Tune's OptunaSearch, telling Optuna the truth about early-stopped trials.

Ray 2.60's OptunaSearch tells every trial that ends with a value COMPLETE, so a trial ASHA stopped
after one epoch enters TPE as if its early value were final, and TPE models early-epoch values
as the outcome of a configuration. Here a trial whose last row is not the trial's final
("status": "completed") row is PRUNED (and a failed trial FAIL, whatever it reported): TPE then ranks it by its intermediate values (reported per
epoch), below the finished trials, which is what Optuna's own pruners produce.

The sampler's study stays in memory (STACK_NOTES: an RDB-backed OptunaSearch fails to restore after
a kill between Tune's snapshots). The database users open, `<experiment>/optuna.db`, is written as
trials run by medguna.study.optuna_storage, never by replacing it with this study.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from medguna.results import OUTCOME_ATTR, TrialOutcome, is_final_row

logger = logging.getLogger(__name__)



class StudySearch(OptunaSearch):
    """OptunaSearch with PRUNED early-stopped trials and FAIL failed ones."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)  # Ray's warning for a second completion
            return
        if trial_id not in self._ot_trials:
            logger.warning("trial %s completed but was never suggested by this searcher; ignored", trial_id)
            return
        if error:  # Ray tells a failed trial that had reported a value COMPLETE with that value
            self._tell(trial_id, "FAIL", TrialOutcome.FAILED, result)
        elif not result or is_final_row(result):
            super().on_trial_complete(trial_id, result, error)
        else:
            self._tell(trial_id, "PRUNED", TrialOutcome.STOPPED_EARLY, result)

    def _tell(self, trial_id: str, state: str, outcome: TrialOutcome, result: dict[str, Any] | None) -> None:
        import optuna

        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(OUTCOME_ATTR, outcome.value)
        ot_trial.set_user_attr("epoch", int((result or {}).get("epoch", 0)))
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState[state])
        self._completed_trials.add(trial_id)
