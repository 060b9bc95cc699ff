"""Bootstrap intervals, exact McNemar and sign-flip tests, and paired bootstraps on constructed
predictions, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medguna.analysis.paired import (
    BETTER,
    NOT_DISTINGUISHABLE,
    SIGN_FLIP_DRAWS,
    WORSE,
    balanced_accuracy_contributions,
    bootstrap_ci,
    compare,
    mcnemar,
    metric_on_resamples,
    paired_bootstrap,
    sign_flip_test,
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


def test_paired_bootstrap_interval_is_a_size_not_a_verdict():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 60)
    perfect = _probs_from(labels, 2)
    coin = _probs_from(rng.integers(0, 2, 120), 2)
    same = paired_bootstrap("balanced_accuracy", labels, coin, coin, n_resamples=500)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    better = paired_bootstrap("balanced_accuracy", labels, perfect, coin, n_resamples=500)
    assert better.low > 0 and not hasattr(better, "verdict")
    # One image of 120 apart: far inside the noise.
    nudged = perfect.copy()
    nudged[0] = [0.2, 0.8]
    row = compare(labels, nudged, perfect, n_resamples=500)
    assert row["verdict"] == NOT_DISTINGUISHABLE
    assert (row["mcnemar_a_only"], row["mcnemar_b_only"], row["mcnemar_p"]) == (0, 1, 1.0)
    assert (row["discordant"], row["balanced_accuracy_p"]) == (1, 1.0)  # 2 patterns, both |d| = 1/120
    assert row["balanced_accuracy_diff"] == pytest.approx(-1 / 120)


def _pair(a_only: int, b_only: int, agree: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two classes of (agree + a_only + b_only) images each; A alone right on a_only images of each
    class, B alone right on b_only, both right elsewhere."""
    per_class = agree + a_only + b_only
    labels = np.repeat([0, 1], per_class)
    a, b = labels.copy(), labels.copy()
    for c in (0, 1):
        start = c * per_class + agree
        b[start:start + a_only] = 1 - c  # B wrong where only A is right
        a[start + a_only:start + a_only + b_only] = 1 - c  # A wrong where only B is right
    return labels, _probs_from(a, 2), _probs_from(b, 2)


def test_four_discordant_images_all_for_the_trial_are_not_distinguishable():
    # 2 images of each class where only A is right: 4 discordant, all for A.
    labels, a, b = _pair(a_only=2, b_only=0)
    row = compare(labels, a, b, n_resamples=200)
    assert row["discordant"] == 4 and (row["mcnemar_a_only"], row["mcnemar_b_only"]) == (4, 0)
    # Exact McNemar: 2 * (1/2)^4 = 0.125. Sign flips: of the 16 patterns only all + and all -
    # reach |d| = 4 / (2 * 42), so p = 2 / 16 = 0.125 as well.
    assert row["mcnemar_p"] == pytest.approx(0.125, abs=1e-12)
    assert row["balanced_accuracy_p"] == pytest.approx(0.125, abs=1e-12)
    assert row["balanced_accuracy_test"].startswith("sign-flip exact (16 sign patterns)")
    assert row["verdict"] == NOT_DISTINGUISHABLE and row["verdict_p"] == pytest.approx(0.125)
    # The paired bootstrap, kept as the size, excludes 0 here: the reason it is not the test.
    assert row["balanced_accuracy_diff_ci95_test_images_low"] > 0


def test_twelve_discordant_images_all_for_the_trial_are_better():
    labels, a, b = _pair(a_only=6, b_only=0)
    row = compare(labels, a, b, n_resamples=200)
    assert row["discordant"] == 12
    # 2 / 2^12 = 1 / 2048 = 0.00048828125, for McNemar and for the sign flips.
    assert row["mcnemar_p"] == pytest.approx(2 / 4096, abs=1e-15)
    assert row["balanced_accuracy_p"] == pytest.approx(2 / 4096, abs=1e-15)
    assert row["balanced_accuracy_p"] < 0.001 and row["verdict"] == BETTER
    assert compare(labels, b, a, n_resamples=200)["verdict"] == WORSE
    accuracy = compare(labels, a, b, n_resamples=200, verdict_metric="accuracy")
    assert accuracy["verdict"] == BETTER and accuracy["verdict_test"] == "exact McNemar (accuracy)"


@pytest.mark.parametrize("discordant", range(6))
def test_five_or_fewer_discordant_images_never_give_a_verdict(discordant):
    # Whatever the split of the discordant images between A and B and between the classes.
    for a_only in range(discordant + 1):
        labels = np.array([0] * 30 + [1] * 10)
        a, b = labels.copy(), labels.copy()
        rng = np.random.default_rng(discordant * 10 + a_only)
        where = rng.choice(40, size=discordant, replace=False)
        b[where[:a_only]] = 1 - labels[where[:a_only]]
        a[where[a_only:]] = 1 - labels[where[a_only:]]
        row = compare(labels, _probs_from(a, 2), _probs_from(b, 2), n_resamples=50)
        assert row["discordant"] == discordant
        assert row["balanced_accuracy_p"] >= 2 / 2**5 > 0.05
        assert row["verdict"] == NOT_DISTINGUISHABLE


def test_sign_flip_exact_by_hand_and_monte_carlo_beyond_the_exact_limit():
    # Contributions +3, +1, -1: |sums| of the 8 patterns are 3,5,1,3,3,1,5,3 -> |obs| = 3 is reached
    # by 6 of 8 (all but the two with |sum| 1).
    result = sign_flip_test([3.0, 1.0, -1.0, 0.0])
    assert (result.discordant, result.draws, result.p_value) == (3, 0, 6 / 8)
    # 30 images all one way: Monte Carlo, seeded; no draw of 20000 reaches |30| (chance 2^-29),
    # so p = (1 + 0) / (1 + 20000).
    mc = sign_flip_test(np.ones(30))
    assert mc.draws == SIGN_FLIP_DRAWS and mc.p_value == pytest.approx(1 / (1 + SIGN_FLIP_DRAWS))
    assert "Monte Carlo" in mc.method and sign_flip_test(np.ones(30)).p_value == mc.p_value
    # Monte Carlo agrees with the exact binomial tail where both apply (40 for, 20 against).
    from scipy.stats import binomtest

    mixed = sign_flip_test(np.r_[np.ones(40), -np.ones(20)])
    assert mixed.p_value == pytest.approx(binomtest(40, 60).pvalue, abs=0.004)


def test_balanced_accuracy_contributions_sum_to_the_difference():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5)
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 3, 15), rng.integers(0, 3, 15)
    share = balanced_accuracy_contributions(labels, a == labels, b == labels, 3)
    whole = np.arange(15)[None]
    expected = (metric_on_resamples("balanced_accuracy", labels, _probs_from(a, 3), whole)[0]
                - metric_on_resamples("balanced_accuracy", labels, _probs_from(b, 3), whole)[0])
    assert share.sum() == pytest.approx(expected)


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
