"""Hyperparameter importance from the exported Optuna study (`<dataset>/optuna.db`).

ASHA-stopped trials reach Optuna as COMPLETE with a low-budget value, so only trials whose user
attribute `outcome` is "completed" are used. When fewer than two such trials exist, or no parameter
varies among them, the table is skipped with a note saying why.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import optuna
import polars as pl

from medguna.analysis.study_info import StudyInfo
from medguna.results import COMPLETED, OPTUNA_FILE, optuna_outcome

FEW_TRIALS = 10


@dataclass
class Importance:
    """Importances for one dataset of one study, or the reason there are none."""

    study: str
    dataset: str
    table: pl.DataFrame  # columns: param, importance, n_trials, evaluator (empty when skipped)
    note: str | None = None


def _evaluator() -> tuple[optuna.importance.BaseImportanceEvaluator, str]:
    # fANOVA (random forest) is steadier than PED-ANOVA on the few dozen trials a study has, but
    # needs scikit-learn; without it, fall back to Optuna's default evaluator.
    if importlib.util.find_spec("sklearn") is not None:
        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fanova"
    return optuna.importance.PedAnovaImportanceEvaluator(), "ped-anova"


def _load(path: Path, name: str) -> tuple[optuna.Study | None, str | None]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    names = optuna.get_all_study_names(storage)
    if name in names:
        return optuna.load_study(study_name=name, storage=storage), None
    if len(names) == 1:
        return (
            optuna.load_study(study_name=names[0], storage=storage),
            f"{path} has no study {name!r}; used its only study {names[0]!r}",
        )
    return None, f"{path} has no Optuna study {name!r} (found: {', '.join(names) or 'none'})"


def _skip(study: StudyInfo, dataset: str, note: str) -> Importance:
    return Importance(study.name, dataset, pl.DataFrame(), f"importance skipped: {note}")


def param_importance(study: StudyInfo, dataset: str, trial_ids: set[str] | None = None) -> Importance:
    """Importances of the parameters that vary among the full-budget trials of one dataset;
    `trial_ids`: only those trials (by the trial_id user attribute the export records), e.g. the
    trials that kept a stage-2 epoch."""
    path = study.path / dataset / OPTUNA_FILE
    if not path.is_file():
        return _skip(study, dataset, f"no Optuna export {path}")
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        loaded, note = _load(path, f"{study.name}-{dataset}")
        if loaded is None:
            return _skip(study, dataset, note or "")
        full = [
            t
            for t in loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if optuna_outcome(t.user_attrs) == COMPLETED
            and (trial_ids is None or t.user_attrs.get("trial_id") in trial_ids)
        ]
        if len(full) < 2:
            return _skip(
                study,
                dataset,
                f"{len(full)} complete full-budget trial(s) in {path}; need at least 2",
            )
        shared = set.intersection(*(set(t.params) for t in full))
        varying = sorted(p for p in shared if len({repr(t.params[p]) for t in full}) > 1)
        if not varying:
            return _skip(
                study, dataset, f"no parameter varies among the {len(full)} full-budget trials"
            )
        values = {t.value for t in full}
        if len(values) < 2:
            return _skip(
                study, dataset,
                f"the objective is the same ({values.pop():.4g}) in all {len(full)} full-budget "
                "trials, so no parameter explains any of its variance",
            )
        subset = optuna.create_study(directions=loaded.directions)
        subset.add_trials(full)
        evaluator, evaluator_name = _evaluator()
        scores = optuna.importance.get_param_importances(
            subset, evaluator=evaluator, params=varying, normalize=True
        )
    finally:
        optuna.logging.set_verbosity(previous)
    table = pl.DataFrame(
        {
            "param": list(scores),
            "importance": [float(v) for v in scores.values()],
        }
    ).with_columns(pl.lit(len(full)).alias("n_trials"), pl.lit(evaluator_name).alias("evaluator"))
    notes = [
        n
        for n in (
            note,
            f"only {len(full)} full-budget trials: importances are noisy"
            if len(full) < FEW_TRIALS
            else None,
        )
        if n
    ]
    return Importance(
        study.name, dataset, table.sort("importance", descending=True), "; ".join(notes) or None
    )
