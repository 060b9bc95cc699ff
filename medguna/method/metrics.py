"""Labelled and label-free evaluation metrics, in numpy (no sklearn).

All functions take (N, K) class probabilities as a torch tensor or numpy array and return plain
Python floats (and a nested list for the confusion matrix), ready for Ray Tune and TensorBoard.
Undefined values (a class absent from the labels, AUROC without both classes) are NaN, never a
made-up 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from medguna.errors import ConfigError

ArrayLike = torch.Tensor | np.ndarray


def _to_numpy(values: ArrayLike, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()  # numpy has no bfloat16
        values = values.numpy()
    return np.asarray(values, dtype=dtype)


def _check_probs(probs: np.ndarray) -> None:
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ConfigError(f"probs must have shape (N, num_classes) with N >= 1, got {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ConfigError("probs contain NaN or infinite values: check the model's outputs")


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of ``scores``; tied values share the mean of the ranks they span."""
    unique_values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    del unique_values
    first_rank_of_group = np.cumsum(counts) - counts + 1
    return (first_rank_of_group + (counts - 1) / 2.0)[inverse]


def binary_auroc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """AUROC via the Mann-Whitney U statistic: P(score_pos > score_neg) + 0.5 P(tie).

    NaN when there are no positives or no negatives.
    """
    n_pos = int(is_positive.sum())
    n_neg = int(is_positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum_pos = float(average_ranks(scores)[is_positive].sum())
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; rows are true classes, columns predicted classes."""
    flat_index = labels * num_classes + predictions
    return np.bincount(flat_index, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


ECE_BINS = 15  # equal-width confidence bins, the common choice (Guo et al. 2017)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over confidence bins of (bin share) * |accuracy - mean confidence|.

    Confidence is the largest class probability; bins are (i/bins, (i+1)/bins], the first also
    holding 0. 0 for perfectly calibrated predictions; an overconfident model scores high.
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # ceil(c * bins) - 1 puts c in (i/bins, (i+1)/bins]; clip keeps c = 0 in the first bin.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.bincount(which, weights=correct, minlength=bins) - np.bincount(
        which, weights=confidence, minlength=bins)
    return float(np.abs(gap).sum() / max(count.sum(), 1))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_k (p_k - onehot_k)^2, in [0, 2]."""
    onehot = np.zeros_like(probs)
    onehot[np.arange(labels.size), labels] = 1.0
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def classification_metrics(
    probs: ArrayLike, labels: ArrayLike, class_names: Sequence[str]
) -> dict[str, float | list[list[int]]]:
    """Accuracy, balanced accuracy, macro F1, AUROC, per-class recall and the confusion matrix.

    - balanced_accuracy: mean recall over the classes present in ``labels``.
    - macro_f1: mean F1 over classes present in the labels or the predictions (sklearn's
      convention); a class with no true positive has F1 0.
    - auroc: two classes -> AUROC of probs[:, 1] for class 1; more -> macro one-vs-rest over the
      classes that have both positives and negatives; NaN when no class qualifies.
    - ece, brier: calibration (expected_calibration_error, brier_score); lower is better.
    - recall_<class_name>: NaN for a class absent from the labels.
    """
    probs_np = _to_numpy(probs, np.float64)
    _check_probs(probs_np)
    num_samples, num_classes = probs_np.shape
    if len(class_names) != num_classes:
        raise ConfigError(
            f"probs have {num_classes} columns but {len(class_names)} class names were given: "
            f"{list(class_names)}"
        )
    labels_np = _to_numpy(labels, np.int64)
    if labels_np.shape != (num_samples,):
        raise ConfigError(f"labels must have shape ({num_samples},), got {labels_np.shape}")
    if labels_np.min() < 0 or labels_np.max() >= num_classes:
        raise ConfigError(
            f"labels must lie in [0, {num_classes}), got values "
            f"{labels_np.min()}..{labels_np.max()}"
        )

    predictions = probs_np.argmax(axis=1)
    counts = confusion_matrix(labels_np, predictions, num_classes)
    true_per_class = counts.sum(axis=1)
    predicted_per_class = counts.sum(axis=0)
    true_positives = np.diag(counts)

    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true_per_class > 0, true_positives / true_per_class, np.nan)
        f1_denominator = true_per_class + predicted_per_class
        f1 = np.where(f1_denominator > 0, 2.0 * true_positives / f1_denominator, np.nan)

    present = true_per_class > 0
    used = f1_denominator > 0
    if num_classes == 2:
        auroc = binary_auroc(probs_np[:, 1], labels_np == 1)
    else:
        per_class_auroc = [binary_auroc(probs_np[:, c], labels_np == c) for c in range(num_classes)]
        defined = [value for value in per_class_auroc if not math.isnan(value)]
        auroc = float(np.mean(defined)) if defined else math.nan

    metrics: dict[str, float | list[list[int]]] = {
        "accuracy": float(true_positives.sum() / num_samples),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[used].mean()),
        "auroc": float(auroc),
        "ece": expected_calibration_error(probs_np, labels_np),
        "brier": brier_score(probs_np, labels_np),
    }
    for name, class_recall in zip(class_names, recall, strict=True):
        metrics[f"recall_{name}"] = float(class_recall)
    metrics["confusion_matrix"] = counts.tolist()
    return metrics


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Natural-log entropy over the last axis, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -terms.sum(axis=-1)


def label_free_metrics(
    probs: ArrayLike,
    teacher_labels: ArrayLike | None = None,
    collapse_threshold: float = 0.95,
) -> dict[str, float]:
    """Scores that need no image labels (docs/method.md §8), all in nats.

    - marginal_entropy: H(mean_i p_i); mean_entropy: mean_i H(p_i).
    - information_maximization: H(mean p) - mean H(p) (SHOT): high when each prediction is confident
      and the classes are used in balance; at most log K.
    - effective_classes: exp(H(mean p)), 1 for a single used class, K for a uniform marginal.
    - max_class_share: the largest fraction of argmax predictions falling on one class.
    - collapsed: 1.0 when max_class_share >= collapse_threshold or effective_classes < 1.05.
    - teacher_agreement (only with teacher_labels): fraction of argmax equal to the teacher's label.
    """
    if not 0.0 < collapse_threshold <= 1.0:
        raise ConfigError(f"collapse_threshold must be in (0, 1], got {collapse_threshold}")
    probs_np = _to_numpy(probs, np.float64)
    _check_probs(probs_np)
    num_samples, num_classes = probs_np.shape
    marginal_entropy = float(_entropy(probs_np.mean(axis=0)))
    mean_entropy = float(_entropy(probs_np).mean())
    predictions = probs_np.argmax(axis=1)
    max_class_share = float(np.bincount(predictions, minlength=num_classes).max() / num_samples)
    effective_classes = math.exp(marginal_entropy)
    collapsed = max_class_share >= collapse_threshold or effective_classes < 1.05
    metrics = {
        "information_maximization": marginal_entropy - mean_entropy,
        "marginal_entropy": marginal_entropy,
        "mean_entropy": mean_entropy,
        "effective_classes": effective_classes,
        "max_class_share": max_class_share,
        "collapsed": 1.0 if collapsed else 0.0,
    }
    if teacher_labels is not None:
        teacher_np = _to_numpy(teacher_labels, np.int64)
        if teacher_np.shape != (num_samples,):
            raise ConfigError(
                f"teacher_labels must have shape ({num_samples},), got {teacher_np.shape}"
            )
        metrics["teacher_agreement"] = float((predictions == teacher_np).mean())
    return metrics
