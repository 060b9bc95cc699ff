"""Bootstrap intervals, McNemar and paired bootstraps on constructed predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medguna.analysis.paired import (
    BETTER,
    NOT_DISTINGUISHABLE,
    WORSE,
    bootstrap_ci,
    compare,
    mcnemar,
    metric_on_resamples,
    paired_bootstrap,
    stratified_resamples,
)
from medguna.method.metrics import classification_metrics


def _probs_from(predicted: np.ndarray, num_classes: int, confidence: float = 0.8) -> np.ndarray:
    probs = np.full((predicted.size, num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(predicted.size), predicted] = confidence
    return probs


def test_mcnemar_matches_the_hand_worked_exact_binomial():
    # 20 images: 10 both right, 1 only A right (b), 8 only B right (c), 1 both wrong.
    a = np.array([1] * 10 + [1] + [0] * 8 + [0], dtype=bool)
    b = np.array([1] * 10 + [0] + [1] * 8 + [0], dtype=bool)
    result = mcnemar(a, b)
    assert (result.a_only, result.b_only) == (1, 8)
    # P(X <= 1) for X ~ Bin(9, 1/2) is (1 + 9) / 512, doubled for two sides.
    assert result.p_value == pytest.approx(20 / 512, abs=1e-12)
    assert mcnemar(a, a).p_value == 1.0


def test_unstratified_bootstrap_equals_scipy_on_the_same_resamples():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 60)
    predicted = np.where(rng.random(60) < 0.7, labels, 1 - labels)
    probs = _probs_from(predicted, 2)
    ours = bootstrap_ci("accuracy", labels, probs, n_resamples=3000, seed=11, stratified=False)
    correct = (predicted == labels).astype(float)
    theirs = stats.bootstrap((correct,), np.mean, n_resamples=3000, method="percentile",
                             rng=np.random.default_rng(11)).confidence_interval
    assert ours.estimate == pytest.approx(correct.mean())
    # scipy draws rng.integers(0, n, (n_resamples, n)) too: identical resamples, identical bounds.
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_stratified_resamples_keep_each_class_count():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5)
    idx = stratified_resamples(labels, n_resamples=50, seed=1)
    assert idx.shape == (50, 15)
    for row in idx:
        assert np.bincount(labels[row], minlength=3).tolist() == [7, 3, 5]


def test_stratified_interval_of_balanced_accuracy_is_the_mean_of_class_recall_draws():
    # Class 0 all right, class 1 right on 10 of 20: only class 1's recall varies under resampling.
    labels = np.array([0] * 20 + [1] * 20)
    predicted = np.array([0] * 20 + [1] * 10 + [0] * 10)
    ci = bootstrap_ci("balanced_accuracy", labels, _probs_from(predicted, 2), n_resamples=4000, seed=3)
    assert ci.estimate == pytest.approx(0.75)
    # Recall of class 1 ~ Bin(20, 0.5) / 20: 95% of draws lie in [6, 14] / 20 -> [0.65, 0.85].
    assert ci.low == pytest.approx(0.65, abs=0.0251) and ci.high == pytest.approx(0.85, abs=0.0251)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_metric_on_all_images_equals_classification_metrics(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 50)
    probs = rng.dirichlet(np.ones(num_classes), 50).round(1)  # rounding makes ties
    probs /= probs.sum(axis=1, keepdims=True)
    expected = classification_metrics(probs, labels, [f"c{i}" for i in range(num_classes)])
    whole = np.arange(50)[None]
    for metric in ("accuracy", "balanced_accuracy", "auroc"):
        assert metric_on_resamples(metric, labels, probs, whole)[0] == pytest.approx(expected[metric])


def test_paired_bootstrap_verdicts():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 60)
    perfect = _probs_from(labels, 2)
    coin = _probs_from(rng.integers(0, 2, 120), 2)
    same = paired_bootstrap("balanced_accuracy", labels, coin, coin, n_resamples=500)
    assert (same.difference, same.p_value, same.verdict) == (0.0, 1.0, NOT_DISTINGUISHABLE)
    better = paired_bootstrap("balanced_accuracy", labels, perfect, coin, n_resamples=500)
    assert better.verdict == BETTER and better.low > 0 and better.p_value == pytest.approx(2 / 501)
    assert paired_bootstrap("auroc", labels, coin, perfect, n_resamples=500).verdict == WORSE
    # One image of 120 apart: far inside the noise.
    nudged = perfect.copy()
    nudged[0] = [0.2, 0.8]
    row = compare(labels, nudged, perfect, n_resamples=500)
    assert row["verdict"] == NOT_DISTINGUISHABLE
    assert (row["mcnemar_a_only"], row["mcnemar_b_only"], row["mcnemar_p"]) == (0, 1, 1.0)
    assert row["balanced_accuracy_diff"] == pytest.approx(-1 / 120)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_each_resample_equals_classification_metrics_on_the_resampled_images(num_classes):
    # AUROC is computed from image multiplicities with one sort for all resamples: check it (and
    # the others) against scoring every resample's images from scratch, ties included.
    rng = np.random.default_rng(10 + num_classes)
    labels = rng.integers(0, num_classes, 40)
    probs = rng.dirichlet(np.ones(num_classes), 40).round(1)
    probs /= probs.sum(axis=1, keepdims=True)
    idx = stratified_resamples(labels, n_resamples=20, seed=2)
    names = [f"c{i}" for i in range(num_classes)]
    for metric in ("accuracy", "balanced_accuracy", "auroc"):
        fast = metric_on_resamples(metric, labels, probs, idx)
        slow = [classification_metrics(probs[row], labels[row], names)[metric] for row in idx]
        assert fast == pytest.approx(slow), metric
