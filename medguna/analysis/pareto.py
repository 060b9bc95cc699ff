"""Accuracy against calibration: which trials no other trial beats on both at once.

A trial is on the Pareto front when no other trial has a higher (or equal) validation balanced
accuracy and a lower (or equal) validation ECE, strictly better on at least one; both measured at
the trial's selected epoch. The figure shows the trade-off a study's single objective hides.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from medguna.analysis.reliability import with_cohort
from medguna.analysis.selection_check import at_selected_epoch

ACCURACY, CALIBRATION = "val_balanced_accuracy", "val_ece"


def pareto_mask(maximize: np.ndarray, minimize: np.ndarray) -> np.ndarray:
    """True where no other point is at least as good on both and strictly better on one."""
    maximize, minimize = np.asarray(maximize, float), np.asarray(minimize, float)
    at_least = (maximize[None, :] >= maximize[:, None]) & (minimize[None, :] <= minimize[:, None])
    strictly = (maximize[None, :] > maximize[:, None]) | (minimize[None, :] < minimize[:, None])
    return ~(at_least & strictly).any(axis=1)


def pareto_table(trials: pl.DataFrame, epochs: pl.DataFrame) -> pl.DataFrame:
    """Completed trials with both values at their selected epoch and an `on_front` flag per
    (cohort, study, dataset)."""
    values = at_selected_epoch(epochs, (ACCURACY, CALIBRATION))
    if CALIBRATION not in values.columns or ACCURACY not in values.columns:
        return pl.DataFrame()
    rows = (
        trials.select("cohort", "study", "dataset", "trial")
        .join(values, on=["study", "dataset", "trial"])
        .drop_nulls([ACCURACY, CALIBRATION])
    )
    parts = []
    for _, part in rows.group_by(["cohort", "study", "dataset"], maintain_order=True):
        mask = pareto_mask(part[ACCURACY].to_numpy(), part[CALIBRATION].to_numpy())
        parts.append(part.with_columns(pl.Series("on_front", mask)))
    return pl.concat(parts) if parts else pl.DataFrame()


def plot_pareto(table: pl.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per cohort and dataset: trials, the front joined by a line."""
    paths = []
    if table.height == 0:
        return paths
    for (cohort, dataset), part in table.group_by(["cohort", "dataset"], maintain_order=True):
        fig, ax = plt.subplots(figsize=(5.0, 3.8), dpi=110, layout="constrained")
        ax.scatter(part[CALIBRATION], part[ACCURACY], color="tab:gray", s=18, label="trial")
        front = part.filter(pl.col("on_front")).sort(CALIBRATION)
        ax.plot(front[CALIBRATION], front[ACCURACY], color="tab:red", marker="o", markersize=4,
                label="Pareto front")
        ax.set_xlabel("validation ECE at the selected epoch (lower is better)")
        ax.set_ylabel("validation balanced accuracy")
        ax.set_title(with_cohort(f"Accuracy against calibration: {dataset}", str(cohort)), fontsize=9)
        ax.legend(fontsize=7)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"pareto_{dataset}_{cohort}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
