"""Does label-free selection work on this data?

For each study and dataset, across completed trials: Kendall's tau-b (scipy.stats.kendalltau)
between each label-free criterion, measured on validation at the trial's selected epoch, and the
test metric at that epoch; and the test cost of picking the trial with the best criterion instead
of the trial with the best validation balanced accuracy (which needs validation labels).

A criterion stage 1 meets by construction (val_teacher_agreement: the teacher agrees with its own
labels, 1.0) is measured over stage-2 epochs only: trials that kept stage 1 alone are left out of
its row (`measured_over` says so and `n_stage1_alone_left_out` counts them), since their 1.0 would
rank them first whatever their test score.
"""

from __future__ import annotations

import math

import polars as pl

from medguna.config import STAGE1_BY_CONSTRUCTION
from medguna.results import COMPLETED, FINAL_STATUS, STATUS

LABEL_FREE_CRITERIA = ("val_information_maximization", "val_teacher_agreement")
LABELLED_CRITERION = "val_balanced_accuracy"
GROUP = ("cohort", "study", "dataset")


def at_selected_epoch(epochs: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """Each completed trial's `columns` at its selected epoch (study, dataset, trial keyed)."""
    present = [c for c in columns if c in epochs.columns]
    key = ["study", "dataset", "trial"]
    # Only the final row holds selected_epoch: carry it to every epoch row of the trial.
    selected = (
        epochs.filter(pl.col(STATUS) == FINAL_STATUS)
        .select(*key, pl.col("selected_epoch").cast(pl.Int64).alias("_selected"))
        .unique(key)
    )
    from_epochs = (
        epochs.join(selected, on=key)
        .filter(pl.col("epoch") == pl.col("_selected"))
        .select(*key, *present)
        .unique(key, keep="last")
    )
    # Epoch 0 is stage 1 alone, which has no epoch row: its values are the final row's stage1_*.
    stage1 = (
        epochs.filter((pl.col(STATUS) == FINAL_STATUS) & (pl.col("selected_epoch").cast(pl.Int64) == 0))
        .select(*key, *[(pl.col(f"stage1_{c}") if f"stage1_{c}" in epochs.columns
                         else pl.lit(None, dtype=epochs.schema[c])).alias(c) for c in present])
        .unique(key, keep="last")
    )
    return pl.concat([from_epochs, stage1], how="vertical_relaxed") if stage1.height else from_epochs


def _picked_test(part: pl.DataFrame, criterion: str, test: str) -> tuple[str | None, float | None]:
    ranked = part.filter(pl.col(criterion).is_not_null() & pl.col(test).is_not_null())
    if ranked.height == 0:
        return None, None
    best = ranked.sort([criterion, "trial"], descending=[True, False]).row(0, named=True)
    return best["trial"], best[test]


def selection_check(trials: pl.DataFrame, epochs: pl.DataFrame,
                    metric: str = "balanced_accuracy") -> pl.DataFrame:
    """One row per (cohort, study, dataset, criterion): n_trials, kendall_tau, kendall_p, the
    trial it picks and its test metric, the best test metric of any trial, and the costs (null when
    the criterion is the same for every trial)."""
    from scipy.stats import kendalltau

    test = f"test_{metric}"
    criteria = (LABELLED_CRITERION, *LABEL_FREE_CRITERIA)
    values = at_selected_epoch(epochs, criteria)
    completed = trials.filter(pl.col("trial_status") == COMPLETED).select(
        *GROUP, "trial", test, pl.col("selected_epoch").cast(pl.Int64).fill_null(0).alias("_selected"))
    rows = completed.join(values, on=["study", "dataset", "trial"], how="left")
    records = []
    for key, part in rows.group_by(list(GROUP), maintain_order=True):
        oracle = part[test].drop_nulls().max()
        _, labelled_test = _picked_test(part, LABELLED_CRITERION, test) if LABELLED_CRITERION in part.columns \
            else (None, None)
        for criterion in criteria:
            if criterion not in part.columns:
                continue
            stage2_only = criterion in STAGE1_BY_CONSTRUCTION
            scored = part.filter(pl.col("_selected") > 0) if stage2_only else part
            pairs = scored.select(criterion, test).drop_nulls()
            tau = p_value = math.nan
            if pairs.height >= 3 and pairs[criterion].n_unique() > 1 and pairs[test].n_unique() > 1:
                result = kendalltau(pairs[criterion].to_numpy(), pairs[test].to_numpy())
                tau, p_value = float(result.statistic), float(result.pvalue)
            # A criterion equal for every trial cannot select one: no pick, no cost.
            varies = pairs[criterion].n_unique() > 1
            picked, picked_test = _picked_test(scored, criterion, test) if varies else (None, None)
            records.append({
                **dict(zip(GROUP, key)),
                "criterion": criterion,
                "needs_labels": criterion == LABELLED_CRITERION,
                "measured_over": "stage-2 epochs only" if stage2_only else "selected epoch",
                "n_stage1_alone_left_out": part.height - scored.height,
                "n_trials": pairs.height,
                "kendall_tau": tau,
                "kendall_p": p_value,
                "picked_trial": picked,
                f"picked_{test}": picked_test,
                f"best_{test}": oracle,
                "cost_vs_best": None if picked_test is None or oracle is None else oracle - picked_test,
                "cost_vs_labelled": None if picked_test is None or labelled_test is None
                else labelled_test - picked_test,
            })
    if not records:
        return pl.DataFrame()
    return pl.DataFrame(records, infer_schema_length=None).sort(list(GROUP), maintain_order=True)
