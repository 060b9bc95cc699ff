"""Reliability diagrams: accuracy against confidence, binned, for the selected configuration.

Entropy minimisation pushes predictions towards overconfidence; a curve below the diagonal shows
it. The bins are those of medguna.method.metrics.expected_calibration_error, so the diagram and
the ECE column agree.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from medguna.analysis.cohorts import cohort_title
from medguna.analysis.plots import wrap_title
from medguna.method.metrics import ECE_BINS, expected_calibration_error

NARROW_TITLE_CHARS = 48  # these figures are about 4.6 inches wide


def with_cohort(title: str, cohort: str) -> str:
    """The cohort warning on its own line, so a narrow figure never cuts it off."""
    label = cohort_title(cohort).strip()
    return wrap_title(f"{title}\n{label}" if label else title, NARROW_TITLE_CHARS)


def reliability_table(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> pl.DataFrame:
    """Non-empty bins: bin (0-based), count, mean_confidence, accuracy."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    used = count > 0
    return pl.DataFrame({
        "bin": np.flatnonzero(used),
        "count": count[used],
        "mean_confidence": np.bincount(which, weights=confidence, minlength=bins)[used] / count[used],
        "accuracy": np.bincount(which, weights=correct, minlength=bins)[used] / count[used],
    })


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> Path:
    """One line per model name -> (labels, probs), with the diagonal and each model's ECE."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110, layout="constrained")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated")
    for name, (labels, probs) in curves.items():
        table = reliability_table(labels, probs)
        ece = expected_calibration_error(probs, labels)
        ax.plot(table["mean_confidence"], table["accuracy"], marker="o", markersize=3,
                label=f"{name} (ECE {ece:.3f}, n={labels.size})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (largest class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
