"""Each experiment's Optuna study as a SQLite file, `<experiment>/optuna.db`, for optuna-dashboard
and the analysis' importances.

While the search runs, the sampler's in-memory study is copied there after each finished trial
(`write_study_copy`), replacing the file whole, so a reader never sees half a database. At the end
of the experiment `export_optuna` replaces it with a study built from Tune's results: one Optuna
trial per Tune trial, with its outcome and error, so a resumed experiment exports the same study.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from pathlib import Path
from typing import Any

from medguna.results import (
    OBJECTIVE_BEST_SO_FAR,
    OPTUNA_FILE,
    OUTCOME_ATTR,
    TrialOutcome,
    outcome_of,
)
from medguna.study.files import copy_file, join


def write_study_copy(study, export_dir: str) -> str:
    """Write `study` (every trial, running ones included) to `<export_dir>/optuna.db` as a new file
    that replaces the old one whole. Returns its location."""
    import optuna

    target = join(export_dir, OPTUNA_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp, OPTUNA_FILE)
        copy = optuna.create_study(storage=f"sqlite:///{db}", study_name=study.study_name,
                                   directions=study.directions)
        copy.add_trials(study.get_trials(deepcopy=False))
        del copy
        copy_file(db, target)
    return target


def export_optuna(plan, p, results) -> dict[str, Any]:
    """Write dataset plan `p`'s <experiment>/optuna.db from Tune's `results`; returns the summary
    the completion marker keeps. ASHA-stopped trials carry user attr outcome="stopped_early" and
    are not COMPLETE."""
    import optuna

    from medguna.study.space import distributions

    space = plan.config.search.space
    dists = distributions(space)
    name = f"{plan.config.study.name}-{p.dataset}"
    counts = dict.fromkeys(TrialOutcome, 0)
    outside_space = 0
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / OPTUNA_FILE
        study = optuna.create_study(storage=f"sqlite:///{db}", study_name=name, direction="maximize")
        for result in results:
            metrics = result.metrics or {}
            config = result.config or {}
            outcome = outcome_of(metrics, failed=result.error is not None, epochs=p.trial.method.stage2_epochs)
            counts[outcome] += 1
            value = metrics.get(OBJECTIVE_BEST_SO_FAR)  # on the final row: the selected epoch's
            complete = outcome == TrialOutcome.COMPLETED and value is not None and math.isfinite(value)
            params = {k: config[k] for k in space if k in config}
            if set(params) != set(dists):
                continue  # a trial that never received its parameters
            try:
                trial = optuna.trial.create_trial(
                    params=params, distributions=dists,
                    value=float(value) if complete else None,
                    state=optuna.trial.TrialState.COMPLETE if complete else (
                        optuna.trial.TrialState.FAIL if outcome == TrialOutcome.FAILED
                        else optuna.trial.TrialState.PRUNED),
                    user_attrs={"trial_id": metrics.get("trial_id", ""), OUTCOME_ATTR: outcome.value,
                                "error": str(result.error)[:500] if result.error else ""},
                )
            except ValueError:
                # A value outside today's space (a study from before resume compared settings, run
                # again with a narrowed space): its results stay in its folder; only Optuna's copy skips it.
                outside_space += 1
                continue
            study.add_trial(trial)
        del study
        copy_file(db, join(plan.study_dir, p.dataset, OPTUNA_FILE))
    return {"optuna_study": name, "counts": {str(k): n for k, n in counts.items()},
            "not_in_optuna_outside_space": outside_space,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
