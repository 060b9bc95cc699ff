"""Uncertainty of test metrics and paired comparisons on the same test images.

- Stratified bootstrap: each resample draws, within every class, as many images as the class has
  (with replacement), so every resample keeps the test split's class counts; 95% intervals are
  the percentile interval of the resampled metric.
- McNemar's test for accuracy: exact two-sided binomial test (scipy.stats.binomtest) on the
  discordant pairs b (A right, B wrong) and c (A wrong, B right), p = 1 when b + c = 0.
- Paired bootstrap for balanced accuracy and AUROC: both models are scored on the same resampled
  images; the interval is the percentile interval of the difference A - B and the two-sided
  p-value is 2 * min(P*(d <= 0), P*(d >= 0)) with add-one smoothing ((count + 1) / (B + 1)).
- Verdict: "better" / "worse" when the difference's interval excludes 0, else
  "not distinguishable".

Everything is vectorised over resamples (index arrays of shape (B, N)); a fixed seed makes every
report reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medguna.errors import ConfigError

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
PAIRED_METRICS = ("accuracy", "balanced_accuracy", "auroc")
BETTER, WORSE, NOT_DISTINGUISHABLE = "better", "worse", "not distinguishable"


def _checked(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],) or probs.shape[0] == 0:
        raise ConfigError(f"need labels (N,) and probs (N, K) with N >= 1, got {labels.shape} and "
                          f"{probs.shape}")
    return labels, probs


def stratified_resamples(labels, n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED,
                         stratified: bool = True) -> np.ndarray:
    """(n_resamples, N) indices into the images; per class counts kept when `stratified`."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if not stratified:
        return rng.integers(0, labels.size, size=(n_resamples, labels.size))
    parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        parts.append(members[rng.integers(0, members.size, size=(n_resamples, members.size))])
    return np.concatenate(parts, axis=1)


def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """(B, N): how often each image appears in each resample."""
    rows = idx.shape[0]
    flat = (np.arange(rows)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n)


def _binary_auroc_rows(scores: np.ndarray, positive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC, P(s_pos > s_neg) + 0.5 P(tie), of each resample given as image
    multiplicities: one sort for all resamples, then weighted counts of negatives below each score
    (O(B*N) instead of a sort per resample). NaN for a resample without both classes."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # groups of tied scores
    weights = counts[:, order]
    pos = np.add.reduceat(weights * positive[order], starts, axis=1)
    neg = np.add.reduceat(weights * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auroc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auroc, np.nan)


def metric_on_resamples(metric: str, labels, probs, idx: np.ndarray) -> np.ndarray:
    """The metric on each resample (rows of `idx`); `idx = arange(N)[None]` gives the plain value,
    equal to medguna.method.metrics.classification_metrics."""
    labels, probs = _checked(labels, probs)
    y = labels[idx]
    num_classes = probs.shape[1]
    if metric == "accuracy":
        return (probs.argmax(axis=1)[idx] == y).mean(axis=1)
    if metric == "balanced_accuracy":
        correct = probs.argmax(axis=1)[idx] == y
        recalls = []
        for c in range(num_classes):
            members = y == c
            with np.errstate(divide="ignore", invalid="ignore"):
                recalls.append((correct & members).sum(axis=1) / members.sum(axis=1))
        with np.errstate(invalid="ignore"):
            stacked = np.stack(recalls, axis=1)
            present = np.isfinite(stacked)
            return np.where(present, stacked, 0.0).sum(axis=1) / present.sum(axis=1)
    if metric == "auroc":
        counts = _multiplicities(idx, labels.size)
        if num_classes == 2:
            return _binary_auroc_rows(probs[:, 1], labels == 1, counts)
        per_class = np.stack([_binary_auroc_rows(probs[:, c], labels == c, counts)
                              for c in range(num_classes)])
        with np.errstate(invalid="ignore"):
            defined = np.isfinite(per_class)
            return np.where(defined, per_class, 0.0).sum(axis=0) / defined.sum(axis=0)
    raise ConfigError(f"no bootstrap for metric {metric!r}; choose one of {', '.join(PAIRED_METRICS)}")


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(metric: str, labels, probs, *, n_resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = SEED, stratified: bool = True) -> Interval:
    """The metric on all images and its percentile bootstrap interval."""
    labels, probs = _checked(labels, probs)
    estimate = float(metric_on_resamples(metric, labels, probs, np.arange(labels.size)[None])[0])
    idx = stratified_resamples(labels, n_resamples, seed, stratified)
    return Interval(estimate, *_percentiles(metric_on_resamples(metric, labels, probs, idx), confidence))


@dataclass(frozen=True)
class PairedDifference:
    """metric(A) - metric(B) on the same images, its interval and two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float

    @property
    def verdict(self) -> str:
        if not math.isfinite(self.low) or not math.isfinite(self.high):
            return NOT_DISTINGUISHABLE
        if self.low > 0:
            return BETTER
        if self.high < 0:
            return WORSE
        return NOT_DISTINGUISHABLE


def paired_bootstrap(metric: str, labels, probs_a, probs_b, *, n_resamples: int = DEFAULT_RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = SEED) -> PairedDifference:
    """Paired stratified bootstrap of metric(A) - metric(B): both scored on each same resample."""
    labels, probs_a = _checked(labels, probs_a)
    _, probs_b = _checked(labels, probs_b)
    if probs_a.shape != probs_b.shape:
        raise ConfigError(f"paired comparison needs the same images: {probs_a.shape} vs {probs_b.shape}")
    whole = np.arange(labels.size)[None]
    difference = float(metric_on_resamples(metric, labels, probs_a, whole)[0]
                       - metric_on_resamples(metric, labels, probs_b, whole)[0])
    idx = stratified_resamples(labels, n_resamples, seed)
    d = metric_on_resamples(metric, labels, probs_a, idx) - metric_on_resamples(metric, labels, probs_b, idx)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return PairedDifference(difference, math.nan, math.nan, math.nan)
    low, high = _percentiles(d, confidence)
    tail = min((d <= 0).sum(), (d >= 0).sum())
    p_value = min(1.0, 2.0 * (tail + 1) / (d.size + 1))
    return PairedDifference(difference, low, high, p_value)


@dataclass(frozen=True)
class McNemar:
    a_only: int  # images A classifies correctly and B does not (b)
    b_only: int  # images B classifies correctly and A does not (c)
    p_value: float


def mcnemar(correct_a, correct_b) -> McNemar:
    """Exact McNemar test: two-sided binomial test of b successes in b + c trials at 1/2."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ConfigError(f"McNemar needs the same images for both models: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    if a_only + b_only == 0:
        return McNemar(0, 0, 1.0)
    return McNemar(a_only, b_only, float(binomtest(a_only, a_only + b_only, 0.5).pvalue))


def compare(labels, probs_a, probs_b, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED,
            verdict_metric: str = "balanced_accuracy") -> dict[str, float | int | str]:
    """A against B on the same images: McNemar (accuracy), paired bootstraps of balanced accuracy
    and AUROC, and the verdict from `verdict_metric`'s interval (balanced accuracy unless AUROC)."""
    labels, probs_a = _checked(labels, probs_a)
    _, probs_b = _checked(labels, probs_b)
    test = mcnemar(probs_a.argmax(axis=1) == labels, probs_b.argmax(axis=1) == labels)
    out: dict[str, float | int | str] = {"mcnemar_a_only": test.a_only, "mcnemar_b_only": test.b_only,
                                         "mcnemar_p": test.p_value}
    verdicts = {}
    for metric in ("balanced_accuracy", "auroc"):
        diff = paired_bootstrap(metric, labels, probs_a, probs_b, n_resamples=n_resamples, seed=seed)
        out.update({f"{metric}_diff": diff.difference, f"{metric}_diff_low": diff.low,
                    f"{metric}_diff_high": diff.high, f"{metric}_p": diff.p_value})
        verdicts[metric] = diff.verdict
    out["verdict"] = verdicts.get(verdict_metric, verdicts["balanced_accuracy"])
    return out
