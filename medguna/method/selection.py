"""Pick the epoch to report from per-epoch metrics, never looking at test metrics (docs/method.md §5.1)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from medguna.config import STAGE1_BY_CONSTRUCTION
from medguna.errors import ConfigError, TrialError


def select_epoch(
    history: Sequence[Mapping[str, float]], objective: str, mode: str = "max"
) -> int:
    """Index into ``history`` (one dict of metrics per epoch) of the best ``objective`` value.

    Ties go to the earliest epoch; epochs where the objective is NaN are skipped. The objective
    is a validation or label-free metric name (e.g. ``val_balanced_accuracy``,
    ``val_information_maximization``); a ``test_`` metric is refused, because selecting on test
    is exactly the reference's flaw.
    """
    if objective.startswith("test_"):
        raise ConfigError(
            f"selection objective {objective!r} is a test metric: select on a validation or "
            "label-free metric such as 'val_balanced_accuracy' or 'val_information_maximization'"
        )
    if mode not in ("max", "min"):
        raise ConfigError(f"selection mode must be 'max' or 'min', got {mode!r}")
    if not history:
        raise TrialError("cannot select an epoch: the trial recorded no epochs")
    best_index: int | None = None
    best_value = math.nan
    for index, epoch_metrics in enumerate(history):
        if objective not in epoch_metrics:
            raise ConfigError(
                f"selection objective {objective!r} is missing from epoch {index}'s metrics; "
                f"available: {sorted(epoch_metrics)}"
            )
        value = float(epoch_metrics[objective])
        if math.isnan(value):
            continue
        better = value > best_value if mode == "max" else value < best_value
        if best_index is None or better:  # strict comparison keeps the earliest of equal values
            best_index, best_value = index, value
    if best_index is None:
        raise TrialError(
            f"cannot select an epoch: {objective!r} is NaN in all {len(history)} epochs"
        )
    return best_index


def stage1_candidate(objective: str, stage1_metrics: dict[str, float]) -> float | None:
    """Stage 1 alone's objective when it competes in selection: None when it did not run on
    validation, or on an objective it meets by construction (it would always win)."""
    if objective in STAGE1_BY_CONSTRUCTION:
        return None
    return stage1_metrics.get(objective)


def best_so_far(history: list[dict[str, Any]], objective: str, stage1: float | None = None) -> float:
    """The objective of what selection would keep so far (stage 1 alone counts when it competes)."""
    values = [h.get(objective, math.nan) for h in history] + ([stage1] if stage1 is not None else [])
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(finite) if finite else math.nan
