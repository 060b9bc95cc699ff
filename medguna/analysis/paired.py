"""Uncertainty of test metrics and paired comparisons on the same test images.

- Stratified bootstrap: each resample draws, within every class, as many images as the class has
  (with replacement), so every resample keeps the test split's class counts; 95% intervals are
  the percentile interval of the resampled metric.
- McNemar's test for accuracy: exact two-sided binomial test (scipy.stats.binomtest) on the
  discordant pairs b (A right, B wrong) and c (A wrong, B right), p = 1 when b + c = 0.
- Sign-flip permutation test of the balanced-accuracy difference: under "A and B are
  interchangeable on every image", each discordant image's contribution to the difference
  (+-1 / (K * n_class)) is equally likely to carry either sign. Exact over all 2^m sign patterns
  of the m discordant images when m <= EXACT_MAX_DISCORDANT, else Monte Carlo with
  SIGN_FLIP_DRAWS seeded draws and p = (1 + k) / (1 + N). With m discordant images no exact test
  can go below 2 / 2^m, so m <= 5 never reaches p < 0.05.
- Paired bootstrap for balanced accuracy and AUROC: both models are scored on the same resampled
  test images; its percentile interval of A - B is the SIZE of the difference, never the test
  (a percentile bootstrap is anti-conservative when few images differ).
- Verdict: "better" / "worse" when the exact test's p < ALPHA, in the direction of the observed
  difference, else "not distinguishable". AUROC gets an interval but no verdict: no exact paired
  test of it is computed here.

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


ALPHA = 0.05
EXACT_MAX_DISCORDANT = 20  # 2^20 sign patterns: exact enumeration stays a few MB per chunk
SIGN_FLIP_DRAWS = 20_000
_TOLERANCE = 1e-12  # |statistic| ties under float rounding count as "as extreme"


@dataclass(frozen=True)
class PairedInterval:
    """metric(A) - metric(B) on the same images and its paired bootstrap interval (a size, not a test)."""

    difference: float
    low: float
    high: float


def paired_bootstrap(metric: str, labels, probs_a, probs_b, *, n_resamples: int = DEFAULT_RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = SEED) -> PairedInterval:
    """Paired stratified bootstrap of metric(A) - metric(B): both scored on each same resample of
    the test images; the percentile interval of the difference."""
    labels, probs_a = _checked(labels, probs_a)
    _, probs_b = _checked(labels, probs_b)
    if probs_a.shape != probs_b.shape:
        raise ConfigError(f"paired comparison needs the same images: {probs_a.shape} vs {probs_b.shape}")
    whole = np.arange(labels.size)[None]
    difference = float(metric_on_resamples(metric, labels, probs_a, whole)[0]
                       - metric_on_resamples(metric, labels, probs_b, whole)[0])
    idx = stratified_resamples(labels, n_resamples, seed)
    d = metric_on_resamples(metric, labels, probs_a, idx) - metric_on_resamples(metric, labels, probs_b, idx)
    return PairedInterval(difference, *_percentiles(d, confidence))


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


@dataclass(frozen=True)
class SignFlip:
    """Sign-flip permutation test of a paired difference that is a sum of per-image contributions."""

    statistic: float  # the observed sum
    discordant: int  # images with a non-zero contribution
    p_value: float
    draws: int  # 0 when exact (all 2^discordant patterns enumerated)

    @property
    def method(self) -> str:
        if self.draws == 0:
            return f"exact ({2 ** self.discordant} sign patterns)"
        return f"Monte Carlo ({self.draws} sign patterns, seed {SEED}, p=(1+k)/(1+N))"


def sign_flip_test(contributions, *, exact_max: int = EXACT_MAX_DISCORDANT,
                   draws: int = SIGN_FLIP_DRAWS, seed: int = SEED) -> SignFlip:
    """Two-sided test of sum(contributions) = 0 against random signs on each non-zero term.

    p = share of sign patterns whose |sum| >= the observed |sum| (exact enumeration, the observed
    pattern included), or (1 + k) / (1 + draws) over seeded random patterns when too many terms.
    """
    values = np.asarray(contributions, dtype=np.float64).ravel()
    nonzero = values[values != 0.0]
    observed = float(values.sum())
    m = nonzero.size
    if m == 0:
        return SignFlip(observed, 0, 1.0, 0)
    threshold = abs(observed) - _TOLERANCE * max(1.0, np.abs(nonzero).sum())
    if m <= exact_max:
        hits, total = 0, 2 ** m
        chunk = 1 << 16
        bits = np.arange(m, dtype=np.int64)
        for start in range(0, total, chunk):
            patterns = np.arange(start, min(total, start + chunk), dtype=np.int64)
            signs = 1.0 - 2.0 * ((patterns[:, None] >> bits) & 1)
            hits += int((np.abs(signs @ nonzero) >= threshold).sum())
        return SignFlip(observed, m, hits / total, 0)
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // m)
    while done < draws:
        rows = min(chunk, draws - done)
        signs = rng.integers(0, 2, size=(rows, m)) * 2.0 - 1.0
        hits += int((np.abs(signs @ nonzero) >= threshold).sum())
        done += rows
    return SignFlip(observed, m, (1 + hits) / (1 + draws), draws)


def balanced_accuracy_contributions(labels, correct_a, correct_b, num_classes: int) -> np.ndarray:
    """Per image, its share of balanced_accuracy(A) - balanced_accuracy(B):
    (correct_a - correct_b) / (K_present * n_class), so the sum is the difference exactly."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    present = int((counts > 0).sum())
    diff = np.asarray(correct_a, dtype=np.float64) - np.asarray(correct_b, dtype=np.float64)
    return diff / (present * counts[labels])


def verdict_from(p_value: float, difference: float, alpha: float = ALPHA) -> str:
    """better / worse when the test rejects at `alpha`, in the direction of the difference."""
    if not math.isfinite(p_value) or p_value >= alpha or difference == 0:
        return NOT_DISTINGUISHABLE
    return BETTER if difference > 0 else WORSE


def compare(labels, probs_a, probs_b, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED,
            verdict_metric: str = "balanced_accuracy") -> dict[str, float | int | str]:
    """A against B on the same test images.

    Tests: exact McNemar of accuracy and the sign-flip permutation test of balanced accuracy; the
    verdict comes from McNemar when `verdict_metric` is accuracy, else from the sign-flip test
    (AUROC has no exact test here, so an AUROC headline is judged on balanced accuracy).
    Sizes: the paired bootstrap interval over test images of each metric's difference.
    """
    labels, probs_a = _checked(labels, probs_a)
    _, probs_b = _checked(labels, probs_b)
    if probs_a.shape != probs_b.shape:
        raise ConfigError(f"paired comparison needs the same images: {probs_a.shape} vs {probs_b.shape}")
    correct_a, correct_b = probs_a.argmax(axis=1) == labels, probs_b.argmax(axis=1) == labels
    test = mcnemar(correct_a, correct_b)
    flip = sign_flip_test(balanced_accuracy_contributions(labels, correct_a, correct_b, probs_a.shape[1]),
                          seed=seed)
    out: dict[str, float | int | str] = {
        "discordant": test.a_only + test.b_only,
        "mcnemar_a_only": test.a_only, "mcnemar_b_only": test.b_only, "mcnemar_p": test.p_value,
        "balanced_accuracy_p": flip.p_value, "balanced_accuracy_test": f"sign-flip {flip.method}",
    }
    for metric in PAIRED_METRICS:
        diff = paired_bootstrap(metric, labels, probs_a, probs_b, n_resamples=n_resamples, seed=seed)
        out.update({f"{metric}_diff": diff.difference,
                    f"{metric}_diff_ci95_test_images_low": diff.low,
                    f"{metric}_diff_ci95_test_images_high": diff.high})
    if verdict_metric == "accuracy":
        out["verdict"] = verdict_from(test.p_value, out["accuracy_diff"])
        out["verdict_p"], out["verdict_test"] = test.p_value, "exact McNemar (accuracy)"
    else:
        out["verdict"] = verdict_from(flip.p_value, out["balanced_accuracy_diff"])
        out["verdict_p"] = flip.p_value
        out["verdict_test"] = f"sign-flip permutation of balanced accuracy, {flip.method}"
    return out
