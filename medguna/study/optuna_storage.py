"""The experiment's Optuna storage: one live SQLite database, `<dataset>/optuna.db`, that a study
writes as its trials run and never replaces.

Optuna's sampler keeps its own study in memory (an RDB-backed OptunaSearch fails to restore after
a kill between Tune's state snapshots, STACK_NOTES), so the record users open with optuna-dashboard
is written by `OptunaRecorder`, a Tune callback of the study driver: a trial enters as RUNNING when
it starts, each epoch adds its intermediate value (the objective so far), and its end sets its
state (COMPLETE, PRUNED for a trial stopped early, FAIL), its value and the user attributes that
tie it to medguna's results. Every write adds or completes; a trial already finished in the
database is left as it is, so a resumed experiment, whose trials start again, neither fails nor
rewrites history. The search is the study `<study>-<dataset>`, the confirmation stage the study
`<study>-<dataset>-confirm` in the same file. `sync_results` adds, at the end of an experiment,
any trial the database lacks (a study that ran before the recorder existed) from Tune's results;
`export_optuna` does that for the runner and returns the summary the completion marker keeps.

On a bucket (`s3://...`) SQLite cannot be written in place: the recorder writes a local copy of the
bucket's file in the temporary folder and uploads it after each finished trial.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ray.tune import Callback

from medguna.config import to_dict
from medguna.results import (
    EPOCH,
    OBJECTIVE_BEST_SO_FAR,
    OPTUNA_FILE,
    OUTCOME_ATTR,
    TrialOutcome,
    method_params,
    outcome_of,
)
from medguna.study.files import filesystem, is_uri, join
from medguna.study.space import is_paper_point

logger = logging.getLogger(__name__)

CONFIRM_STUDY_SUFFIX = "-confirm"
# User attributes of each stored trial: how a dashboard row is found among medguna's results.
ATTR_TRIAL = "medguna_trial"  # t0003: medguna's trial number (Optuna numbers from 0)
ATTR_FOLDER = "trial_folder"  # the trial's folder in the study's storage
ATTR_RUN = "tensorboard_run"  # <experiment>/<trial folder>: the run under `tensorboard --logdir <study>`
ATTR_PAPER = "paper_point"  # the trial ran the paper's hyperparameters
ATTR_ERROR = "error"
ATTR_TUNE_ID = "tune_trial_id"
ATTR_ABOUT = "about"  # the study's note
RESULT_ATTRS = ("selected_epoch", "test_balanced_accuracy", "test_accuracy", "test_auroc",
                "zeroshot_test_balanced_accuracy", "seed")


def study_name(study: str, dataset: str, confirm: bool = False) -> str:
    return f"{study}-{dataset}" + (CONFIRM_STUDY_SUFFIX if confirm else "")


class LiveDatabase:
    """The SQLite file of one experiment folder (local, or a local copy of a bucket's)."""

    def __init__(self, directory: str) -> None:
        self.target = join(directory, OPTUNA_FILE)
        self.remote = is_uri(directory)
        if self.remote:
            # A copy of its own, taken from the bucket (the last one published): a copy kept between
            # runs would outlive a `--fresh` that emptied the bucket.
            self.path = Path(tempfile.mkdtemp(prefix="medguna-optuna-"), OPTUNA_FILE)
            self._download()
        else:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.path = Path(self.target)
        self._storage = None

    @property
    def storage(self):
        if self._storage is None:
            import optuna

            self._storage = optuna.storages.RDBStorage(f"sqlite:///{self.path}")
        return self._storage

    def study_id(self, name: str) -> int:
        import optuna

        try:
            return self.storage.get_study_id_from_name(name)
        except KeyError:
            try:
                return self.storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
            except optuna.exceptions.DuplicatedStudyError:  # another writer made it meanwhile
                return self.storage.get_study_id_from_name(name)

    def publish(self) -> None:
        """Upload the local copy to the bucket (no-op for a local folder)."""
        if not self.remote:
            return
        fs, inner = filesystem(self.target)
        fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(inner) as f:
            f.write(self.path.read_bytes())

    def _download(self) -> None:
        import pyarrow.fs as pafs

        fs, inner = filesystem(self.target)
        if fs.get_file_info(inner).type == pafs.FileType.File:
            with fs.open_input_stream(inner) as f:
                self.path.write_bytes(f.read())


class StudyRecord:
    """One Optuna study in the live database: trials keyed by Tune's trial id."""

    def __init__(self, db: LiveDatabase, name: str, space: dict[str, dict]) -> None:
        from medguna.study.space import distributions

        self.db, self.name = db, name
        self.study_id = db.study_id(name)
        self.distributions = distributions(space)
        self._ids: dict[str, int] = {}
        for trial in db.storage.get_all_trials(self.study_id, deepcopy=False):
            key = trial.user_attrs.get(ATTR_TUNE_ID)
            if key:
                self._ids[str(key)] = trial._trial_id

    def describe(self, text: str, objective: str) -> None:
        """The study's note for its readers (a user attribute `about`, and optuna-dashboard's note
        where optuna-dashboard is installed) and the name of its value. Written once."""
        import optuna

        storage = self.db.storage
        if storage.get_study_user_attrs(self.study_id).get(ATTR_ABOUT) == text:
            return
        storage.set_study_user_attr(self.study_id, ATTR_ABOUT, text)
        study = optuna.load_study(study_name=self.name, storage=storage)
        with warnings.catch_warnings():  # experimental in Optuna 5.0, stable in what it stores
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([objective])  # the dashboard's axis says what the value is
        try:
            from optuna_dashboard import save_note
        except ImportError:  # the `dashboard` extra is optional
            return
        save_note(study, text)

    def has(self, tune_id: str) -> bool:
        return tune_id in self._ids

    def _updatable(self, tune_id: str) -> int | None:
        """The stored trial's id while it is still RUNNING; None once finished (left as it is)."""
        trial_id = self._ids.get(tune_id)
        if trial_id is None:
            return None
        return trial_id if not self.db.storage.get_trial(trial_id).state.is_finished() else None

    def _params(self, config: dict[str, Any]) -> tuple[dict, dict]:
        """The searched values of `config` that lie in the space (Optuna refuses others)."""
        params, dists = {}, {}
        for name, dist in self.distributions.items():
            if name not in config:
                continue
            try:
                dist.to_internal_repr(config[name])
            except (ValueError, TypeError):
                continue
            if getattr(dist, "choices", None) is not None and config[name] not in dist.choices:
                continue
            if hasattr(dist, "low") and not dist.low <= config[name] <= dist.high:
                continue
            params[name], dists[name] = config[name], dist
        return params, dists

    def start(self, tune_id: str, config: dict[str, Any], attrs: dict[str, Any],
              started: dt.datetime | None = None) -> None:
        """Add the trial as RUNNING (once: a resumed trial keeps its record and start time)."""
        import optuna

        if tune_id in self._ids:
            return
        params, dists = self._params(config)
        template = optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.RUNNING, value=None,
            datetime_start=started or dt.datetime.now(), datetime_complete=None, params=params,
            distributions=dists, user_attrs={**_clean(attrs), ATTR_TUNE_ID: tune_id},
            system_attrs={}, intermediate_values={})
        self._ids[tune_id] = self.db.storage.create_new_trial(self.study_id, template_trial=template)

    def report(self, tune_id: str, step: int, value: Any) -> None:
        trial_id = self._updatable(tune_id)
        if trial_id is not None and _finite(value):
            self.db.storage.set_trial_intermediate_value(trial_id, int(step), float(value))

    def finish(self, tune_id: str, state: str, value: Any, attrs: dict[str, Any]) -> None:
        """Set the trial's user attributes, then its final state and value (COMPLETE needs one)."""
        import optuna

        trial_id = self._updatable(tune_id)
        if trial_id is None:
            return
        storage = self.db.storage
        for key, attr in _clean(attrs).items():
            storage.set_trial_user_attr(trial_id, key, attr)
        final = optuna.trial.TrialState[state]
        if final == optuna.trial.TrialState.COMPLETE and not _finite(value):
            final = optuna.trial.TrialState.FAIL
        storage.set_trial_state_values(
            trial_id, final, [float(value)] if final == optuna.trial.TrialState.COMPLETE else None)

    def add_finished(self, tune_id: str, config: dict[str, Any], state: str, value: Any,
                     steps: dict[int, float], started: dt.datetime, completed: dt.datetime,
                     attrs: dict[str, Any]) -> bool:
        """Add a trial the database lacks, whole (used for results written before the recorder)."""
        import optuna

        if tune_id in self._ids:
            return False
        params, dists = self._params(config)
        final = optuna.trial.TrialState[state]
        if final == optuna.trial.TrialState.COMPLETE and not _finite(value):
            final = optuna.trial.TrialState.FAIL
        template = optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=final,
            value=float(value) if final == optuna.trial.TrialState.COMPLETE else None,
            datetime_start=started, datetime_complete=completed, params=params, distributions=dists,
            user_attrs={**_clean(attrs), ATTR_TUNE_ID: tune_id}, system_attrs={},
            intermediate_values={int(k): float(v) for k, v in steps.items() if _finite(v)})
        self._ids[tune_id] = self.db.storage.create_new_trial(self.study_id, template_trial=template)
        return True


def study_note(name: str, experiment: str) -> str:
    """What a dashboard reader needs to match this study with medguna's report."""
    stage = "confirmation stage (the best configurations rerun with fresh seeds)" \
        if name.endswith(CONFIRM_STUDY_SUFFIX) else "search"
    return (
        f"medguna experiment `{experiment}`, {stage}.\n\n"
        "- Optuna numbers trials from 0 in the order they started; medguna's trial number (t0001, ...) "
        f"is the user attribute `{ATTR_TRIAL}`, its folder `{ATTR_FOLDER}`, its TensorBoard run "
        f"`{ATTR_RUN}`, and `{ATTR_PAPER}` marks the paper's hyperparameters.\n"
        "- Value: the validation objective at the epoch selection keeps (0: stage 1 alone); "
        "intermediate values: the objective so far after each epoch. PRUNED trials were stopped "
        "early (ASHA).\n"
        "- Trials tied on the value: report.html ranks them by launch order; the dashboard's best "
        "trial may be another of them.\n"
        "- Parameter importance here is computed by optuna-dashboard from every COMPLETE trial "
        "(equal shares when it cannot tell parameters apart); with few full-budget trials it means "
        "nothing. report.html says when it skips importance and why."
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """JSON-storable attributes; missing and non-finite values left out."""
    out = {}
    for key, value in attrs.items():
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


# Optuna's state for each outcome: a trial that ended short of its budget is PRUNED, as Optuna's own
# pruners leave it (its intermediate values stay; TPE ranks it below finished trials).
OPTUNA_STATE = {TrialOutcome.COMPLETED: "COMPLETE", TrialOutcome.STOPPED_EARLY: "PRUNED",
                TrialOutcome.INCOMPLETE: "PRUNED", TrialOutcome.FAILED: "FAIL"}


def outcome(result: dict[str, Any] | None, failed: bool, epochs: int | None) -> tuple[str, TrialOutcome]:
    """(Optuna state, medguna's outcome) of a finished trial from its last result."""
    found = outcome_of(result, failed=failed, epochs=epochs)
    return OPTUNA_STATE[found], found


def trial_attrs(experiment: str, folder: str, trial_dir: str, config: dict[str, Any],
                result: dict[str, Any] | None, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ties a stored trial to medguna's results: trial number, folder, TensorBoard run,
    whether it is the paper's point, and its test metrics once it has them."""
    attrs: dict[str, Any] = {ATTR_TRIAL: folder.split("_", 1)[0], ATTR_FOLDER: trial_dir,
                             ATTR_RUN: f"{experiment}/{folder}",
                             ATTR_PAPER: is_paper_point(method_params(config), fixed)}
    for key in RESULT_ATTRS:
        value = (result or {}).get(key, config.get(key) if key == "seed" else None)
        if value is not None:
            attrs[key] = value
    return attrs


class OptunaRecorder(Callback):
    """A Tune callback writing the experiment's trials into the live Optuna database as they run.

    directory: the dataset's experiment folder (holds optuna.db); experiment: the Tune experiment's
    folder name (`<dataset>` or `<dataset>_confirm`); name: the Optuna study; metric: Tune's
    metric, the objective so far, reported each epoch; objective: its name for readers; epochs:
    stage-2 epochs of a full-budget trial (a trial ending before them was stopped early).
    """

    def __init__(self, directory: str, experiment: str, name: str, space: dict[str, dict],
                 metric: str, objective: str = "objective", epochs: int | None = None,
                 fixed: dict[str, Any] | None = None) -> None:
        self.directory, self.experiment, self.name = directory, experiment, name
        self.fixed = fixed  # the study's own method values (medguna.study.space.is_paper_point)
        self.space, self.metric, self.objective, self.epochs = dict(space), metric, objective, epochs
        self._record: StudyRecord | None = None

    # Tune pickles its callbacks into tuner.pkl: no open database in it.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_record"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._record = None

    @property
    def record(self) -> StudyRecord:
        if self._record is None:
            self._record = StudyRecord(LiveDatabase(self.directory), self.name, self.space)
            # The value's name: short, as the dashboard writes it beside its axes.
            self._record.describe(study_note(self.name, self.experiment), self.objective)
        return self._record

    def _safely(self, what: str, action) -> None:
        # The record must never stop a study: a write that fails is logged and the trials go on.
        try:
            action()
        except Exception as exc:  # noqa: BLE001
            logger.warning("optuna.db: could not record %s (%s: %s)", what, type(exc).__name__, exc)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._safely(f"the start of {trial.trial_id}", lambda: self.record.start(
            trial.trial_id, trial.config, self._attrs(trial, None)))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if EPOCH in result and self.metric in result:
            self._safely(f"epoch {result[EPOCH]} of {trial.trial_id}", lambda: self.record.report(
                trial.trial_id, result[EPOCH], result[self.metric]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, failed=True)

    def _finish(self, trial, failed: bool) -> None:
        result = trial.last_result or {}
        state, ended = outcome(result, failed, self.epochs)
        attrs = {**self._attrs(trial, result), OUTCOME_ATTR: ended.value}
        if failed:
            attrs[ATTR_ERROR] = _error_text(trial)

        def write() -> None:
            self.record.start(trial.trial_id, trial.config, attrs)  # a trial whose start was missed
            self.record.finish(trial.trial_id, state, result.get(self.metric), attrs)
            self.record.db.publish()

        self._safely(f"the end of {trial.trial_id}", write)

    def _attrs(self, trial, result) -> dict[str, Any]:
        path = str(getattr(trial, "path", "") or "")
        folder = os.path.basename(path.rstrip("/")) or trial.trial_id
        return trial_attrs(self.experiment, folder, path, trial.config, result, self.fixed)


def _error_text(trial) -> str:
    from medguna.study.progress import error_reason

    return error_reason(trial)[:500]


def sync_results(directory: str, experiment: str, name: str, space: dict[str, dict], results,
                 metric: str, epochs: int | None = None, finished: set[str] | None = None,
                 fixed: dict[str, Any] | None = None) -> int:
    """Add to the live database every finished trial of Tune's `results` that it lacks (from
    their per-epoch rows), and finish those it holds as RUNNING; returns how many were added.

    finished: the Tune ids of the trials Tune's saved state calls finished. After a Ctrl-C the
    others will run again on resume: their records stay RUNNING (None: every result is finished)."""
    db = LiveDatabase(directory)
    record = StudyRecord(db, name, space)
    added = 0
    for result in results:
        metrics, config = result.metrics or {}, result.config or {}
        tune_id = str(metrics.get("trial_id") or "")
        if not tune_id or (finished is not None and tune_id not in finished):
            continue
        state, ended = outcome(metrics, result.error is not None, epochs)
        folder = os.path.basename(str(result.path).rstrip("/"))
        attrs = {**trial_attrs(experiment, folder, str(result.path), config, metrics, fixed),
                 OUTCOME_ATTR: ended.value}
        if result.error is not None:
            attrs[ATTR_ERROR] = str(result.error)[:500]
        if record.has(tune_id):
            record.finish(tune_id, state, metrics.get(metric), attrs)
            continue
        rows = result.metrics_dataframe
        steps, started, completed = {}, None, None
        if rows is not None and len(rows):
            if EPOCH in rows and metric in rows:
                steps = {int(e): float(v) for e, v in zip(rows[EPOCH], rows[metric], strict=True)
                         if _finite(v) and _finite(e)}
            first, last = rows.iloc[0], rows.iloc[-1]
            completed = dt.datetime.fromtimestamp(float(last["timestamp"]))
            started = dt.datetime.fromtimestamp(float(first["timestamp"]) - float(first.get("time_this_iter_s", 0.0)))
        now = dt.datetime.now()
        added += record.add_finished(tune_id, config, state, metrics.get(metric), steps,
                                     started or now, completed or now, attrs)
    db.publish()
    return added


def export_optuna(plan, p, results) -> dict[str, Any]:
    """Complete dataset plan `p`'s <experiment>/optuna.db from Tune's `results`: the live database
    the study wrote as its trials ran gains only what it lacks, never replaced. Returns the summary
    the completion marker keeps."""
    from medguna.study.tune_state import FINISHED_STATUSES, saved_trials

    exp_dir = join(plan.study_dir, p.dataset)
    name = study_name(plan.config.study.name, p.dataset)
    counts = dict.fromkeys(TrialOutcome, 0)
    for result in results:
        counts[outcome_of(result.metrics, failed=result.error is not None,
                          epochs=p.trial.method.stage2_epochs)] += 1
    # Only what Tune saved as finished: a trial stopped by Ctrl-C runs again on resume.
    saved = saved_trials(exp_dir)
    finished = None if saved is None else {t["trial_id"] for t in saved if t.get("status") in FINISHED_STATUSES}
    added = sync_results(exp_dir, p.dataset, name, plan.config.search.space, results, OBJECTIVE_BEST_SO_FAR,
                         p.trial.method.stage2_epochs, finished, fixed=to_dict(p.trial.method))
    return {"optuna_study": name, "counts": {str(k): n for k, n in counts.items()},
            "optuna_trials_added_at_end": added,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
