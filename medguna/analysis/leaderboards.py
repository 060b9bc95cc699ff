"""Leaderboards: trials per dataset, configurations across datasets, and seed repeats.

Only completed trials are ranked; stopped-early, failed and incomplete trials are listed after
them with their state and reason. Ranks never cross cohorts (real vs synthetic or test-size) nor
studies with different objectives.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from medguna.analysis.configurations import configuration_expr, searched_params
from medguna.analysis.stats import seed_summary
from medguna.errors import DataError
from medguna.results import (
    BASELINE_STAGE,
    CALIBRATION_METRICS,
    COMPLETED,
    FAILED,
    HEADLINE_METRICS,
    INCOMPLETE,
    OBJECTIVE_BEST_SO_FAR,
    PAPER_POINT,
    STOPPED_EARLY,
)

# Groups inside which objective values are comparable.
RANK_GROUP = ("cohort", "study_objective", "study_mode")
# The leaderboard column holding the ★ mark of the paper's hyperparameters (the paper's values run
# in the study's variant) and the label of the baseline arm's row (medguna.study.baseline).
PAPER_POINT_COLUMN = "paper_hparams"
PAPER_POINT_LABEL = "★ paper's hyperparameters"
BASELINE_LABEL = "reference variant at the paper's point (baseline arm, not ranked)"
_STATE_ORDER = {COMPLETED: 0, STOPPED_EARLY: 1, INCOMPLETE: 2, FAILED: 3}


def with_gains(trials: pl.DataFrame) -> pl.DataFrame:
    """Add `gain_<metric>` = test metric at the selected epoch minus zero-shot test metric."""
    return trials.with_columns(
        (pl.col(f"test_{m}") - pl.col(f"zeroshot_test_{m}")).alias(f"gain_{m}")
        for m in HEADLINE_METRICS
    )


def check_metric(metric: str) -> str:
    """`metric` if it is a headline metric. Never test_selected_* (runtime.protocol=reference):
    that figure is chosen on the test split itself, so it is shown in trials.csv, never ranked."""
    if metric not in HEADLINE_METRICS:
        raise DataError(
            f"metric {metric!r} cannot head a leaderboard; choose one of {', '.join(HEADLINE_METRICS)} "
            "(test metrics at the validation-selected epoch; test_selected_* is chosen on test and never ranked)"
        )
    return metric


def _signed_objective(column: str = "objective_selected") -> pl.Expr:
    # Ranks below always sort ascending: negate for "max" studies.
    return pl.when(pl.col("study_mode") == "min").then(pl.col(column)).otherwise(-pl.col(column))


def _stopped_note() -> pl.Expr:
    """What a stopped trial was judged by: its best objective so far, which is stage 1 alone where
    that beat every stage-2 epoch (ASHA compares that value, not the last epoch's), and whether its
    validation predictions collapsed to one class on the way."""
    stage2_best = pl.col("objective_best_epoch")
    so_far = pl.col(OBJECTIVE_BEST_SO_FAR)
    from_stage1 = pl.when(pl.col("study_mode") == "min").then(so_far < stage2_best).otherwise(so_far > stage2_best)
    stage1 = (
        pl.when(from_stage1.fill_null(False))
        .then(pl.format(", stage 1 alone; stage 2's best {}", stage2_best.round(3)))
        .otherwise(pl.lit(""))
    )
    collapsed = (
        pl.when(pl.col("ever_collapsed").fill_null(0) > 0)
        .then(pl.lit("; validation collapsed to one class"))
        .otherwise(pl.lit(""))
    )
    return pl.format(
        "stopped after epoch {} of {} (best val so far {}{}{})",
        pl.col("epochs_run"), pl.col("stage2_epochs"), so_far.round(3), stage1, collapsed,
    )


def dataset_leaderboard(
    trials: pl.DataFrame,
    dataset: str,
    param_names: Sequence[str],
    metric: str = "balanced_accuracy",
) -> pl.DataFrame:
    """Trials of one dataset ranked by the study objective (validation), best first.

    Columns: cohort, rank, trial, trial_status, paper_hparams (★), the searched parameters, seed,
    objective value, selected epoch, test metric, zero-shot test metric, gain, note.
    """
    check_metric(metric)
    rows = with_gains(trials.filter(pl.col("dataset") == dataset))
    params = searched_params(rows, param_names)
    baseline = (pl.col("stage") == BASELINE_STAGE) if "stage" in rows.columns else pl.lit(False)
    rows = rows.with_columns(baseline.fill_null(False).alias("_baseline"))
    # The baseline arm (medguna.study.baseline) is listed for comparison, never ranked.
    completed = (pl.col("trial_status") == COMPLETED) & ~pl.col("_baseline")
    rank = (
        pl.when(completed)
        .then(
            pl.when(completed).then(_signed_objective()).rank("min").over([*RANK_GROUP, "dataset"])
        )
        .otherwise(None)
        .cast(pl.Int64)
    )
    rows = rows.with_columns(
        rank.alias("rank"),
        pl.col("trial_status").replace_strict(_STATE_ORDER, default=9).alias("_state_order"),
        pl.when(pl.col("_baseline"))
        .then(pl.lit(BASELINE_LABEL))
        .when(pl.col(PAPER_POINT))
        .then(pl.lit(PAPER_POINT_LABEL))
        .otherwise(pl.lit(""))
        .alias(PAPER_POINT_COLUMN),
        pl.when(pl.col("trial_status") == FAILED)
        .then(pl.col("error_reason"))
        .when(pl.col("trial_status") == STOPPED_EARLY)
        .then(_stopped_note())
        .when(pl.col("trial_status") == INCOMPLETE)
        .then(pl.format("no final row yet ({} epochs reported)", pl.col("epochs_run").fill_null(0)))
        .otherwise(pl.lit(""))
        .alias("note"),
    )
    rows = rows.sort(
        ["cohort", "study_objective", "_baseline", "_state_order", "rank", "trial_number"], nulls_last=True
    )
    others = [
        f"{kind}_{m}"
        for m in HEADLINE_METRICS
        if m != metric
        for kind in ("test", "zeroshot_test", "gain")
    ]
    columns = [
        "cohort",
        "study",
        "dataset",
        "rank",
        "trial",
        "trial_status",
        PAPER_POINT_COLUMN,
        *params,
        "seed",
        "study_objective",
        "objective_selected",
        "selected_epoch",
        "epochs_run",
        f"test_{metric}",
        f"zeroshot_test_{metric}",
        f"gain_{metric}",
        "note",
        *others,
        *(f"{kind}_{m}" for m in CALIBRATION_METRICS for kind in ("test", "zeroshot_test")),
        "objective_best_epoch",
        "ever_collapsed",
        "trial_id",
        "trial_dir",
    ]
    return rows.select([c for c in columns if c in rows.columns])


def _completed_configurations(
    trials: pl.DataFrame, params: Sequence[str], metric: str
) -> pl.DataFrame:
    check_metric(metric)
    return (
        with_gains(trials.filter(pl.col("trial_status") == COMPLETED))
        .with_columns(configuration_expr(params))
        .with_columns(
            pl.col(f"gain_{metric}").alias("gain"), pl.col(f"test_{metric}").alias("test")
        )
    )


def across_leaderboard(
    trials: pl.DataFrame, param_names: Sequence[str], metric: str = "balanced_accuracy"
) -> pl.DataFrame:
    """Configurations ranked across datasets, within each cohort and objective.

    Per dataset a configuration's seeds are averaged, then configurations are ranked by that mean
    objective (1 = best). Across datasets: configurations run on more datasets first (a rank on one
    dataset is not comparable with a mean over five), then by mean rank, then by mean gain.
    """
    params = searched_params(trials, param_names)
    rows = _completed_configurations(trials, params, metric)
    if rows.height == 0:
        return pl.DataFrame()
    per_dataset = (
        rows.group_by([*RANK_GROUP, "dataset", "configuration"])
        .agg(
            *(pl.col(p).first() for p in params),
            pl.col("objective_selected").mean(),
            pl.col("gain").mean(),
            pl.col("test").mean(),
            pl.col(PAPER_POINT).any(),
        )
        .with_columns(
            _signed_objective().rank("min").over([*RANK_GROUP, "dataset"]).alias("dataset_rank")
        )
    )
    datasets_in_group = pl.col("dataset").n_unique().over(list(RANK_GROUP))
    per_dataset = per_dataset.with_columns(datasets_in_group.alias("datasets_in_group"))
    across = (
        per_dataset.group_by([*RANK_GROUP, "configuration"])
        .agg(
            *(pl.col(p).first() for p in params),
            pl.col("dataset_rank").mean().alias("mean_rank"),
            pl.col("gain").mean().alias(f"mean_gain_{metric}"),
            pl.col("test").mean().alias(f"mean_test_{metric}"),
            pl.col("dataset").n_unique().alias("n_datasets"),
            pl.col("datasets_in_group").first(),
            pl.format("{}:{}", pl.col("dataset"), pl.col("dataset_rank"))
            .sort()
            .str.join(", ")
            .alias("ranks"),
            pl.col(PAPER_POINT).any().alias(PAPER_POINT_COLUMN),
        )
        .with_columns(pl.col(PAPER_POINT_COLUMN).replace_strict({True: PAPER_POINT_LABEL, False: ""}))
    )
    across = across.sort(
        ["cohort", "study_objective", "n_datasets", "mean_rank", f"mean_gain_{metric}"],
        descending=[False, False, True, False, True],
    ).with_columns(
        pl.int_range(1, pl.len() + 1).over(list(RANK_GROUP)).alias("rank"),
        pl.format("{}/{}", pl.col("n_datasets"), pl.col("datasets_in_group")).alias("coverage"),
    )
    columns = [
        "cohort",
        "study_objective",
        "rank",
        PAPER_POINT_COLUMN,
        *params,
        "coverage",
        "mean_rank",
        f"mean_gain_{metric}",
        f"mean_test_{metric}",
        "ranks",
        "configuration",
    ]
    return across.select(columns)


def seeds_table(
    trials: pl.DataFrame,
    param_names: Sequence[str],
    metric: str = "balanced_accuracy",
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Configurations run with several seeds, per dataset (completed trials only): mean, sd and the
    spread over seeds of test, gain and objective (medguna.analysis.stats.seed_summary: the
    seeds' range below SEED_BOOTSTRAP_MIN seeds, else a percentile bootstrap of the mean over
    seeds). Columns `<measure>_low_seeds` / `_high_seeds` and the text `<measure>_over_seeds`
    name what they cover: training randomness (seeds) on one split and one test set."""
    params = searched_params(trials, param_names)
    rows = _completed_configurations(trials, params, metric)
    group = [*RANK_GROUP, "dataset", "configuration"]
    records = []
    for key, part in rows.group_by(group, maintain_order=True):
        if part["seed"].n_unique() < 2:
            continue
        record = dict(zip(group, key))
        record.update({p: part[p][0] for p in params})
        record["n"] = part.height
        record["seeds"] = ", ".join(str(s) for s in sorted(part["seed"].to_list()))
        notes = []
        for name, column in (
            (f"test_{metric}", "test"),
            (f"gain_{metric}", "gain"),
            ("objective", "objective_selected"),
        ):
            summary = seed_summary(part[column].to_list(), confidence)
            record.update(
                {
                    f"{name}_mean": summary.mean,
                    f"{name}_sd": summary.sd,
                    f"{name}_low_seeds": summary.low,
                    f"{name}_high_seeds": summary.high,
                    f"{name}_over_seeds": summary.text(),
                }
            )
            record["interval_over_seeds"] = summary.kind
            if summary.zero_width:
                notes.append(f"{name}: seeds agree (zero width)")
        record["seeds_note"] = "; ".join(notes)
        records.append(record)
    if not records:
        return pl.DataFrame()
    return pl.DataFrame(records).sort(
        ["cohort", "dataset", f"test_{metric}_mean"], descending=[False, False, True]
    )
