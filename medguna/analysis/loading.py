"""Ray Tune result folders of one or many studies -> two tidy Polars tables.

`epochs`: one row per trial and reported epoch (a trial with no reported epoch keeps one row with
a null epoch, so failures are never lost); `trials`: one row per trial with its parameters,
provenance, state (completed / stopped_early / failed / incomplete) and final test metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from tqdm import tqdm

from medguna.analysis.cohorts import cohort_expr, with_input_split
from medguna.analysis.study_info import StudyInfo, read_study_info
from medguna.analysis.trial_files import error_reason, read_params
from medguna.errors import DataError
from medguna.results import (
    BASELINE_STAGE,
    BASELINE_SUFFIX,
    COMPLETED,
    CONFIRM_STAGE,
    CONFIRM_SUFFIX,
    DESIGN_DIMENSIONS,
    EPOCH_COLUMNS,
    FINAL_ROW_COLUMNS,
    FINAL_STATUS,
    LEGACY_OBJECTIVE,
    LEGACY_PAPER_POINT,
    LEGACY_VARIANT,
    OBJECTIVE_BEST_SO_FAR,
    OBJECTIVE_SELECTED,
    PAPER_POINT,
    PROVENANCE,
    RESULT_FILE,
    SEARCH_STAGE,
    STATUS,
    TRIAL_DIR_PATTERN,
    VARIANT,
    classify_outcome,
)

TRIAL_KEY = ("study", "dataset", "trial")
# Columns that are strings even when every value is missing (null columns need a dtype).
_STRING_COLUMNS = (
    *PROVENANCE,
    "objective",
    "status",
    "description_source",
    "preprocessing",
    "text_wrapper",
)


@dataclass
class ResultSet:
    """Everything read from the study folders, plus notes on what was skipped and why."""

    studies: list[StudyInfo]
    epochs: pl.DataFrame
    trials: pl.DataFrame
    notes: list[str] = field(default_factory=list)
    # Names of the params.json keys, in first-seen order.
    param_names: list[str] = field(default_factory=list)
    # Per-image predictions (medguna.trial.predictions) of every trial that wrote them, keyed by
    # study, dataset and trial; the prob_<class> columns of other datasets' classes are null.
    predictions: pl.DataFrame = field(default_factory=pl.DataFrame)


@dataclass(frozen=True)
class _TrialFolder:
    study: StudyInfo
    dataset: str
    path: Path
    number: int
    trial_id: str
    stage: str = SEARCH_STAGE

    @property
    def trial(self) -> str:
        """The trial's name in the tables: its folder, prefixed by `confirm/` for confirmation runs."""
        return self.path.name if self.stage == SEARCH_STAGE else f"{self.stage}/{self.path.name}"


def load_results(study_dirs: str | Path | Sequence[str | Path], progress: bool = True) -> ResultSet:
    """Read every trial folder of the given studies; DataError when nothing usable is there."""
    dirs = [study_dirs] if isinstance(study_dirs, (str, Path)) else list(study_dirs)
    if not dirs:
        raise DataError("no study folder given; pass at least one <storage>/<study> folder")
    studies = _distinct_studies(dirs)
    notes: list[str] = []
    folders = list(_trial_folders(studies, notes))
    if not folders:
        where = ", ".join(str(s.path) for s in studies)
        raise DataError(
            f"no trial folders (t<NNNN>_<trial id>/) under {where}: the study has not run any "
            "trial "
            "yet, or the path is not a study folder; run the study first or pass the right folder"
        )
    frames = [
        _trial_frame(folder) for folder in tqdm(folders, desc="scan trials", disable=not progress)
    ]
    epochs = _collect(frames, folders)
    param_names = [c.removeprefix("param__") for c in epochs.columns if c.startswith("param__")]
    epochs = _finish_epochs(_upgrade_legacy(epochs), studies)
    trials = _trial_table(epochs)
    return ResultSet(
        studies=studies,
        epochs=epochs,
        trials=trials,
        notes=notes,
        param_names=param_names,
        predictions=_load_predictions(folders, notes),
    )


def _load_predictions(folders: list[_TrialFolder], notes: list[str]) -> pl.DataFrame:
    """Every trial's predictions.parquet, with its study, dataset and trial; a file that cannot be
    read is skipped with a note (the trial's metrics stay in the tables)."""
    from medguna.trial.predictions import PREDICTIONS_FILE, read_predictions

    frames = []
    for folder in folders:
        path = folder.path / PREDICTIONS_FILE
        if not path.is_file():
            continue
        try:
            frame = read_predictions(path)
        except DataError as exc:
            notes.append(f"predictions skipped: {exc}")
            continue
        frames.append(
            frame.with_columns(
                pl.lit(folder.study.name).alias("study"),
                pl.lit(folder.dataset).alias("dataset"),
                pl.lit(folder.trial).alias("trial"),
            )
        )
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _upgrade_legacy(epochs: pl.DataFrame) -> pl.DataFrame:
    """Rows of earlier studies in today's names (medguna.results.upgrade_row, column-wise)."""
    if LEGACY_OBJECTIVE in epochs.columns:
        value = pl.col(LEGACY_OBJECTIVE).cast(pl.Float64)
        final = (pl.col(STATUS) == FINAL_STATUS).fill_null(False) if STATUS in epochs.columns else pl.lit(False)
        renamed = {OBJECTIVE_BEST_SO_FAR: value, OBJECTIVE_SELECTED: pl.when(final).then(value)}
        epochs = epochs.with_columns(
            (pl.coalesce(pl.col(name).cast(pl.Float64), expr) if name in epochs.columns else expr).alias(name)
            for name, expr in renamed.items()
        ).drop(LEGACY_OBJECTIVE)
    if LEGACY_VARIANT in epochs.columns:
        old = pl.col(LEGACY_VARIANT).cast(pl.String)
        epochs = epochs.with_columns(
            (pl.coalesce(pl.col(VARIANT).cast(pl.String), old) if VARIANT in epochs.columns else old).alias(VARIANT)
        ).drop(LEGACY_VARIANT)
    if LEGACY_PAPER_POINT in epochs.columns:
        old = pl.col(LEGACY_PAPER_POINT).cast(pl.Boolean)
        epochs = epochs.with_columns(
            (pl.coalesce(pl.col(PAPER_POINT).cast(pl.Boolean), old) if PAPER_POINT in epochs.columns
             else old).alias(PAPER_POINT)
        ).drop(LEGACY_PAPER_POINT)
    return epochs


def _distinct_studies(dirs: list[str | Path]) -> list[StudyInfo]:
    studies: list[StudyInfo] = []
    seen_paths: set[Path] = set()
    for d in dirs:
        info = read_study_info(d)
        resolved = info.path.resolve()
        if resolved in seen_paths:
            continue
        clash = [s for s in studies if s.name == info.name]
        if clash:
            raise DataError(
                f"{clash[0].path} and {info.path} both hold study {info.name!r}; their trials "
                "would be confused: pass only one of them (or rename one study)"
            )
        seen_paths.add(resolved)
        studies.append(info)
    return studies


def _trial_folders(studies: list[StudyInfo], notes: list[str]) -> Iterable[_TrialFolder]:
    for study in studies:
        for dataset in study.datasets:
            dataset_dir = study.path / dataset
            if not dataset_dir.is_dir():
                notes.append(
                    f"study {study.name}: no folder for dataset {dataset} ({dataset_dir}); "
                    "it has not run"
                )
                continue
            found = list(_experiment_trials(study, dataset, dataset_dir, SEARCH_STAGE))
            if not found:
                notes.append(f"study {study.name}: dataset {dataset} has no trial folders yet")
            yield from found
            for suffix, stage in ((CONFIRM_SUFFIX, CONFIRM_STAGE), (BASELINE_SUFFIX, BASELINE_STAGE)):
                stage_dir = study.path / f"{dataset}{suffix}"
                if stage_dir.is_dir():
                    yield from _experiment_trials(study, dataset, stage_dir, stage)


def _experiment_trials(
    study: StudyInfo, dataset: str, experiment_dir: Path, stage: str
) -> Iterable[_TrialFolder]:
    for child in sorted(experiment_dir.iterdir()):
        match = TRIAL_DIR_PATTERN.match(child.name)
        if child.is_dir() and match:
            yield _TrialFolder(
                study, dataset, child, int(match["number"]), match["trial_id"], stage
            )


def _trial_meta(folder: _TrialFolder) -> dict:
    params = read_params(folder.path)
    meta: dict = {f"param__{k}": v for k, v in params.items()}
    meta.update(
        study=folder.study.name,
        dataset=params.get("dataset", folder.dataset),
        trial=folder.trial,
        stage=folder.stage,
        trial_number=folder.number,
        trial_id=folder.trial_id,
        trial_dir=str(folder.path),
        error_reason=error_reason(folder.path),
        study_objective=folder.study.objective,
        study_mode=folder.study.mode,
    )
    meta["failed"] = meta["error_reason"] is not None
    return meta


def _trial_frame(folder: _TrialFolder) -> pl.LazyFrame:
    """The trial's epoch rows (lazily scanned) crossed with its one-row metadata."""
    meta = pl.DataFrame([_trial_meta(folder)]).lazy()
    result = folder.path / RESULT_FILE
    if not result.is_file() or result.stat().st_size == 0:
        return meta
    rows = pl.scan_ndjson(result, infer_schema_length=None)
    return _drop_ray_duplicates(rows).join(meta, how="cross")


def _drop_ray_duplicates(rows: pl.LazyFrame) -> pl.LazyFrame:
    # Ray nests the whole config (params.json has it flat) and repeats trial_id, study and dataset
    # (the trial folder and study.json are the authority for those).
    return rows.drop(["config", "trial_id", "study", "dataset"], strict=False)


def _collect(frames: list[pl.LazyFrame], folders: list[_TrialFolder]) -> pl.DataFrame:
    try:
        return pl.concat(frames, how="diagonal_relaxed").collect()
    except pl.exceptions.PolarsError:
        pass
    # Polars' NDJSON reader rejects NaN/Infinity, which Ray writes for non-finite floats: read such
    # files with Python's json (which accepts them) and keep the lazy scan for the others.
    eager = [_eager_trial_frame(frame, folder) for frame, folder in zip(frames, folders)]
    return pl.concat(eager, how="diagonal_relaxed")


def _eager_trial_frame(frame: pl.LazyFrame, folder: _TrialFolder) -> pl.DataFrame:
    try:
        return frame.collect()
    except pl.exceptions.PolarsError:
        pass
    result = folder.path / RESULT_FILE
    rows = []
    for number, line in enumerate(result.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{result} line {number} is not valid JSON ({exc.msg}); the file is truncated or "
                "corrupt: if the study is still running wait for it, otherwise delete this trial "
                "folder or rerun the trial"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{result} line {number} is not a JSON object")
        rows.append({k: _finite_or_none(v) for k, v in row.items() if not isinstance(v, dict)})
    meta = pl.DataFrame([_trial_meta(folder)])
    if not rows:
        return meta
    table = _drop_ray_duplicates(pl.from_dicts(rows, infer_schema_length=None).lazy()).collect()
    return table.join(meta, how="cross")


def _finite_or_none(value: object) -> object:
    # NaN in a metric means "not defined" (e.g. AUROC with one class): store it as missing.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finish_epochs(epochs: pl.DataFrame, studies: list[StudyInfo]) -> pl.DataFrame:
    epochs = _merge_params(epochs)
    objectives = tuple(s.objective for s in studies)
    for name in (
        *EPOCH_COLUMNS,
        *FINAL_ROW_COLUMNS,
        *PROVENANCE,
        *DESIGN_DIMENSIONS,
        *objectives,
        "status",
        "seed",
        "stage2_epochs",
        PAPER_POINT,
    ):
        if name not in epochs.columns:  # e.g. no trial reported an epoch: every one failed at start
            # PAPER_POINT must not be a Float64: pl.col(pl.Float64) below would select it a
            # second time in the same with_columns (every trial failed before its first report).
            dtype = (pl.String if name in _STRING_COLUMNS else pl.Int64 if name == "epoch"
                     else pl.Boolean if name == PAPER_POINT else pl.Float64)
            epochs = epochs.with_columns(pl.lit(None, dtype=dtype).alias(name))
    epochs = epochs.with_columns(
        pl.col("epoch").cast(pl.Int64),
        pl.col(PAPER_POINT).cast(pl.Boolean).fill_null(False),
        # NaN and null both mean "no value" here; keep one of them so means and ranks skip it.
        pl.col(pl.Float64).fill_nan(None),
    )
    epochs = _fill_provenance_from_study(epochs, studies)
    epochs = with_input_split(epochs.with_columns(cohort_expr(), _objective_expr(studies)), TRIAL_KEY)
    epochs = _with_trial_status(epochs)
    return epochs.sort([*TRIAL_KEY[:2], "trial_number", "epoch"], nulls_last=False)


def _merge_params(epochs: pl.DataFrame) -> pl.DataFrame:
    """Turn the `param__*` columns into plain names; result rows win where both exist."""
    for column in [c for c in epochs.columns if c.startswith("param__")]:
        name = column.removeprefix("param__")
        if name in epochs.columns:
            merged = pl.coalesce(
                pl.col(name), pl.col(column).cast(epochs.schema[name], strict=False)
            )
            epochs = epochs.with_columns(merged.alias(name)).drop(column)
        else:
            epochs = epochs.rename({column: name})
    return epochs


def _fill_provenance_from_study(epochs: pl.DataFrame, studies: list[StudyInfo]) -> pl.DataFrame:
    """Trials that reported nothing still get their data source, encoder and checkpoint."""
    rows = [
        {
            "study": s.name,
            "dataset": d,
            "study_data_source": s.data_source.get(d),
            "study_encoder": s.encoder,
            "study_checkpoint": s.checkpoint,
        }
        for s in studies
        for d in s.datasets
    ]
    defaults = pl.DataFrame(
        rows,
        schema={
            "study": pl.String,
            "dataset": pl.String,
            "study_data_source": pl.String,
            "study_encoder": pl.String,
            "study_checkpoint": pl.String,
        },
    )
    epochs = epochs.with_columns(pl.col("dataset").cast(pl.String))
    epochs = epochs.join(defaults, on=["study", "dataset"], how="left")
    fill = {
        "data_source": "study_data_source",
        "encoder": "study_encoder",
        "checkpoint": "study_checkpoint",
    }
    epochs = epochs.with_columns(
        pl.coalesce(pl.col(col).cast(pl.String), pl.col(default)).alias(col)
        for col, default in fill.items()
    )
    return epochs.drop(list(fill.values()))


def _objective_expr(studies: list[StudyInfo]) -> pl.Expr:
    """`objective_this_epoch`: each row's value of its study's objective metric."""
    expr: pl.Expr = pl.lit(None, dtype=pl.Float64)
    for objective in sorted({s.objective for s in studies}):
        expr = (
            pl.when(pl.col("study_objective") == objective).then(pl.col(objective)).otherwise(expr)
        )
    return expr.cast(pl.Float64).alias("objective_this_epoch")


def _with_trial_status(epochs: pl.DataFrame) -> pl.DataFrame:
    """`trial_status`: each trial's TrialOutcome, by medguna.results' one rule."""
    key = list(TRIAL_KEY)
    per_trial = epochs.group_by(key).agg(
        pl.col("failed").any().alias("_failed"),
        (pl.col(STATUS) == FINAL_STATUS).any().fill_null(False).alias("_final"),
        pl.col("epoch").max().alias("_epochs_run"),
        pl.col("stage2_epochs").drop_nulls().first().alias("_epochs"),
    )
    outcomes = [
        classify_outcome(failed=bool(failed), final=bool(final), epochs_run=run, epochs=budget).value
        for failed, final, run, budget in per_trial.select("_failed", "_final", "_epochs_run", "_epochs").iter_rows()
    ]
    per_trial = per_trial.select(key).with_columns(pl.Series("trial_status", outcomes, dtype=pl.String))
    return epochs.join(per_trial, on=key, how="left", maintain_order="left")


def _trial_table(epochs: pl.DataFrame) -> pl.DataFrame:
    """One row per trial: constants, state, final-row metrics and objective summaries."""
    key = list(TRIAL_KEY)
    per_epoch = {*EPOCH_COLUMNS, *FINAL_ROW_COLUMNS, "status", "objective_this_epoch"}
    per_epoch |= {c for c in epochs.columns if c.startswith(("val_", "test_", "zeroshot_"))}
    ray_columns = {
        "training_iteration", "timestamp", "done", "time_total_s", "time_this_iter_s",
        "iterations_since_restore", "date", "hostname", "node_ip", "pid", "time_since_restore",
        "checkpoint_dir_name", "should_checkpoint",
    }
    constants = [c for c in epochs.columns if c not in per_epoch | ray_columns | set(key)]
    is_final = pl.col(STATUS) == FINAL_STATUS
    final = [
        c
        for c in epochs.columns
        if c in FINAL_ROW_COLUMNS or c.startswith(("test_", "zeroshot_test_"))
    ]
    aggregations = [
        *(pl.col(c).drop_nulls().first().alias(c) for c in constants),
        *(pl.col(c).filter(is_final).last().alias(c) for c in final),
        pl.col("epoch").max().alias("epochs_run"),
        pl.col("objective_this_epoch").sort_by("epoch").drop_nulls().last().alias("objective_last_epoch"),
        # What ASHA and Optuna judged the trial by (stage 1 alone included where it competes).
        (pl.col(OBJECTIVE_BEST_SO_FAR).sort_by("epoch").drop_nulls().last()
         if OBJECTIVE_BEST_SO_FAR in epochs.columns else pl.lit(None, dtype=pl.Float64)).alias(OBJECTIVE_BEST_SO_FAR),
        pl.col("objective_this_epoch").max().alias("objective_max_epoch"),
        pl.col("objective_this_epoch").min().alias("objective_min_epoch"),
        pl.col("zeroshot_val_balanced_accuracy")
        .drop_nulls()
        .first()
        .alias("zeroshot_val_balanced_accuracy"),
        pl.col("val_collapsed").max().alias("ever_collapsed"),
        pl.col("time_total_s").max().alias("time_total_s")
        if "time_total_s" in epochs.columns
        else pl.lit(None, dtype=pl.Float64).alias("time_total_s"),
    ]
    trials = epochs.group_by(key, maintain_order=True).agg(aggregations)
    # The value a completed trial is ranked by: its reported objective at the selected epoch.
    at_selected = (
        epochs.filter(pl.col("epoch") == pl.col("selected_epoch").cast(pl.Int64))
        .select([*key, pl.col("objective_this_epoch").alias("objective_at_selected")])
        .unique(key, keep="last")
    )
    trials = trials.join(at_selected, on=key, how="left")
    best = (
        pl.when(pl.col("study_mode") == "min")
        .then(pl.col("objective_min_epoch"))
        .otherwise(pl.col("objective_max_epoch"))
    )
    ranked = pl.coalesce(
        pl.col("objective_selected").cast(pl.Float64), pl.col("objective_at_selected")
    )
    trials = trials.with_columns(
        best.alias("objective_best_epoch"),
        # Results written before rows carried it: the best stage-2 epoch is what there is.
        pl.coalesce(OBJECTIVE_BEST_SO_FAR, best).alias(OBJECTIVE_BEST_SO_FAR),
        pl.when(pl.col("trial_status") == COMPLETED)
        .then(ranked)
        .otherwise(None)
        .alias("objective_selected"),
    ).drop(["objective_max_epoch", "objective_min_epoch", "objective_at_selected"])
    return trials.sort(["study", "dataset", "trial_number"])
