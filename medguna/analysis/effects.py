"""Effect tables: objective and gain over zero-shot by one hyperparameter (median, IQR, count).

Continuous parameters are put in buckets chosen around the paper's values (prompt length 113,
entropy weight 1.5) so that the reference setting and "off" (0) each get their own level.
"""

from __future__ import annotations

import polars as pl

from medguna.analysis.leaderboards import RANK_GROUP, with_gains
from medguna.results import COMPLETED, SELECTED_EPOCH

# (upper bound inclusive, label); "0 (off)" is exactly 0, negative weights (a diversity term) below it.
PROMPT_LENGTH_BUCKETS = (
    (0, "0 (no prompts)"),
    (16, "1-16"),
    (64, "17-64"),
    (128, "65-128"),
    (float("inf"), ">128"),
)
ENTROPY_WEIGHT_BUCKETS = (
    (-1.0, "<= -1 (diversity)"),
    (-1e-12, "(-1, 0) (diversity)"),
    (0.0, "0 (off)"),
    (0.5, "(0, 0.5]"),
    (1.0, "(0.5, 1]"),
    (2.0, "(1, 2]"),
    (float("inf"), ">2"),
)
BUCKETS = {"prompt_length": PROMPT_LENGTH_BUCKETS, "entropy_weight": ENTROPY_WEIGHT_BUCKETS}


def _bucket_exprs(param: str) -> tuple[pl.Expr, pl.Expr]:
    """(level label, level order) for one parameter."""
    if param in BUCKETS:
        label: pl.Expr = pl.lit(None, dtype=pl.String)
        order: pl.Expr = pl.lit(None, dtype=pl.Float64)
        # Built from the last bucket backwards so the first matching bound wins.
        for index, (upper, text) in reversed(list(enumerate(BUCKETS[param]))):
            hit = pl.col(param) <= upper
            label = pl.when(hit).then(pl.lit(text)).otherwise(label)
            order = pl.when(hit).then(pl.lit(float(index))).otherwise(order)
        return label, order
    if param == "adapter_width":
        return pl.col(param).cast(pl.String), pl.col(param).cast(pl.Float64)
    return pl.col(param).cast(pl.String), pl.lit(0.0)


def _iqr_stats(column: str, prefix: str) -> list[pl.Expr]:
    # Quartiles of one value are that value: an IQR of 0 there would read as "no spread", so a
    # level with fewer than 2 trials shows none (a dash) and its n says why.
    several = pl.col(column).drop_nulls().len() >= 2
    q25 = pl.when(several).then(pl.col(column).quantile(0.25, "linear"))
    q75 = pl.when(several).then(pl.col(column).quantile(0.75, "linear"))
    return [
        pl.col(column).median().alias(f"{prefix}_median"),
        q25.alias(f"{prefix}_q25"),
        q75.alias(f"{prefix}_q75"),
        (q75 - q25).alias(f"{prefix}_iqr"),
    ]


def kept_stage2(trials: pl.DataFrame) -> pl.DataFrame:
    """Trials whose selected epoch is a stage-2 epoch: stage 2 was kept, so its hyperparameters
    (prompt length, entropy weight, ...) shaped the result."""
    return trials.filter(pl.col(SELECTED_EPOCH).fill_null(0) > 0)


def effect_table(
    trials: pl.DataFrame, param: str, metric: str = "balanced_accuracy", stage2_only: bool = False
) -> pl.DataFrame:
    """Per cohort, dataset and level of `param`: count, how many kept stage 1 alone (selected
    epoch 0: stage 2 thrown away), median/IQR of objective and of gain. `stage2_only`: the same
    over trials that kept a stage-2 epoch.

    Only completed trials count: a stopped or failed trial's numbers are not comparable.
    """
    if param not in trials.columns:
        return pl.DataFrame()
    rows = with_gains(trials.filter(pl.col("trial_status") == COMPLETED))
    if stage2_only:
        rows = kept_stage2(rows)
    if rows.height == 0:
        return pl.DataFrame()
    label, order = _bucket_exprs(param)
    rows = rows.with_columns(label.alias("level"), order.alias("_order"))
    table = rows.group_by([*RANK_GROUP, "dataset", "level"]).agg(
        pl.col("_order").first(),
        pl.len().alias("n"),
        (pl.col(SELECTED_EPOCH).fill_null(0) == 0).sum().alias("n_stage1_alone"),
        *_iqr_stats("objective_selected", "objective"),
        *_iqr_stats(f"gain_{metric}", f"gain_{metric}"),
    )
    table = table.sort(["cohort", "dataset", "_order", "level"]).drop("_order")
    return table.rename({"level": param}).select(
        [
            "cohort",
            "dataset",
            param,
            "n",
            "n_stage1_alone",
            *[c for c in table.columns if c.startswith(("objective_", "gain_"))],
            "study_objective",
        ]
    )
