"""runtime.protocol=reference: the test split read every epoch, as the reference does, and the best of
those epochs reported apart as test_selected_*. Optimistic (chosen on test): never the objective,
never ranked."""

from __future__ import annotations

import math
from typing import Any

from medguna.trial.evaluation import evaluate, split_metrics

TEST_EPOCH_PREFIX = "test_epoch_"
TEST_SELECTED_PREFIX = "test_selected_"
TEST_SELECTED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def epoch_test_metrics(ctx, state) -> dict[str, Any]:
    """This epoch's test metrics as test_epoch_* (reference protocol only; else nothing)."""
    if ctx.cfg.runtime.protocol != "reference":
        return {}
    r = ctx.cfg.runtime
    probs = evaluate(state.plain_student, ctx.shared, "test", device=ctx.device,
                     autocast=ctx.autocast, batch_size=r.eval_batch_size)
    metrics, _ = split_metrics(probs, ctx.shared.labels["test"], ctx.shared.spec, TEST_EPOCH_PREFIX,
                               threshold=r.collapse_threshold)
    return metrics


def reference_selected(ctx, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference's reported figure: the epoch of best test accuracy and its test metrics.

    Named test_selected_* so that it is never mistaken for the validation-selected test_* columns.
    """
    if ctx.cfg.runtime.protocol != "reference":
        return {}
    accuracies = [h.get(f"{TEST_EPOCH_PREFIX}accuracy", math.nan) for h in history]
    best = max(range(len(history)), key=lambda i: (accuracies[i] if math.isfinite(accuracies[i]) else -1.0, -i))
    chosen = history[best]
    return {
        f"{TEST_SELECTED_PREFIX}epoch": best + 1,
        **{f"{TEST_SELECTED_PREFIX}{m}": chosen.get(f"{TEST_EPOCH_PREFIX}{m}", math.nan)
           for m in TEST_SELECTED_METRICS},
        f"{TEST_SELECTED_PREFIX}note": "optimistic: chosen on test, as the reference reports",
    }
