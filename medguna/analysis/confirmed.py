"""The confirmed leaderboard: the confirmation stage's reruns (medguna.study.confirm), per dataset
one row per configuration with the mean and spread over its fresh seeds (range, or a percentile
bootstrap over seeds from 5 seeds: medguna.analysis.stats.seed_summary), ranked by mean
validation objective (never by test)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from medguna.analysis.leaderboards import RANK_GROUP, seeds_table
from medguna.results import BASELINE_STAGE, CONFIRM_STAGE, SEARCH_STAGE


def search_trials(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of the search experiments only: what the sampler proposed, one seed each."""
    if "stage" not in frame.columns:
        return frame
    return frame.filter(pl.col("stage").fill_null(SEARCH_STAGE) == SEARCH_STAGE)


def board_trials(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows a dataset leaderboard lists: the search's, and the baseline arm's (listed, not ranked)."""
    if "stage" not in frame.columns:
        return frame
    return frame.filter(pl.col("stage").fill_null(SEARCH_STAGE).is_in([SEARCH_STAGE, BASELINE_STAGE]))


def confirmed_leaderboard(
    trials: pl.DataFrame,
    param_names: Sequence[str],
    metric: str = "balanced_accuracy",
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Confirmation runs grouped by configuration: n seeds, mean, sd and spread over seeds of test metric,
    gain over zero-shot and validation objective; rank 1 = best mean objective per dataset."""
    if "stage" not in trials.columns:
        return pl.DataFrame()
    table = seeds_table(trials.filter(pl.col("stage") == CONFIRM_STAGE), param_names, metric, confidence)
    if table.height == 0:
        return table
    signed = (
        pl.when(pl.col("study_mode") == "min")
        .then(pl.col("objective_mean"))
        .otherwise(-pl.col("objective_mean"))
    )
    table = table.with_columns(signed.rank("min").over([*RANK_GROUP, "dataset"]).cast(pl.Int64).alias("rank"))
    first = ["cohort", "dataset", "rank"]
    return table.select(first + [c for c in table.columns if c not in first]).sort(
        ["cohort", "dataset", "rank"]
    )
