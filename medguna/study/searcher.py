"""Tune's OptunaSearch, telling Optuna the truth about early-stopped trials and writing its study
to the experiment folder as trials finish.

Ray 2.60's OptunaSearch tells every trial that ends with a value COMPLETE, so a trial ASHA stopped
after one epoch enters TPE as if its early value were final, and TPE models early-epoch values
as the outcome of a configuration. Here a trial whose last row is not the trial's final
("status": "completed") row is PRUNED (and a failed trial FAIL, whatever it reported): TPE then ranks it by its intermediate values (reported per
epoch), below the finished trials, which is what Optuna's own pruners produce.

The sampler's study stays in memory (STACK_NOTES: an RDB-backed OptunaSearch fails to restore after
a kill between Tune's snapshots) and is copied to `<experiment>/optuna.db` after each finished trial,
replacing the file whole, so optuna-dashboard and live progress can read it while the study runs.
At the end of the experiment the runner replaces it with the export built from Tune's results
(runner.export_optuna), which adds each trial's outcome and error.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from medguna.results import OPTUNA_FILE, OUTCOME_ATTR, TrialOutcome, is_final_row

logger = logging.getLogger(__name__)



class StudySearch(OptunaSearch):
    """OptunaSearch with PRUNED early-stopped trials and a live SQLite copy in `export_dir`."""

    def __init__(self, *args, export_dir: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.export_dir = export_dir

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
        self._export()

    def _tell(self, trial_id: str, state: str, outcome: TrialOutcome, result: dict[str, Any] | None) -> None:
        import optuna

        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(OUTCOME_ATTR, outcome.value)
        ot_trial.set_user_attr("epoch", int((result or {}).get("epoch", 0)))
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState[state])
        self._completed_trials.add(trial_id)

    def _export(self) -> None:
        if self.export_dir is not None and self._ot_study is not None:
            write_study_copy(self._ot_study, self.export_dir)


def write_study_copy(study, export_dir: str) -> str:
    """Write `study` (every trial, running ones included) to `<export_dir>/optuna.db` as a new file
    that replaces the old one whole (a reader never sees half a database). Returns its location."""
    import optuna

    from medguna.study.remote import filesystem

    target = "/".join([export_dir.rstrip("/"), OPTUNA_FILE]) if "://" in export_dir \
        else str(Path(export_dir, OPTUNA_FILE))
    local_dir = None if "://" in export_dir else Path(export_dir)
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=local_dir) as tmp:
        db = Path(tmp, OPTUNA_FILE)
        copy = optuna.create_study(storage=f"sqlite:///{db}", study_name=study.study_name,
                                   directions=study.directions)
        copy.add_trials(study.get_trials(deepcopy=False))
        del copy
        if local_dir is not None:
            os.replace(db, target)
        else:
            fs, inner = filesystem(target)
            fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(inner) as f:
                f.write(db.read_bytes())
    return target
