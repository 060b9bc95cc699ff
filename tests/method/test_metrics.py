"""Labelled and label-free metrics against numbers worked out on paper."""

import math

import numpy as np
import pytest
import torch

from medguna.errors import ConfigError
from medguna.method.metrics import average_ranks, classification_metrics, label_free_metrics

# Six images, two classes; the class-1 scores 0.6 / 0.6 tie between a positive and a negative.
BINARY_PROBS = np.array(
    [[0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.4, 0.6], [0.7, 0.3], [0.9, 0.1]]
)
BINARY_LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks(np.array([0.3, 0.1, 0.3, 0.9])), [2.5, 1, 2.5, 4])


def test_binary_metrics_with_a_tie():
    metrics = classification_metrics(BINARY_PROBS, BINARY_LABELS, ["NORMAL", "TB"])
    # Positive-negative pairs: 0.9 and 0.8 beat all 3 negatives; 0.6 ties 0.6 (1/2) and beats 2.
    assert metrics["auroc"] == pytest.approx(8.5 / 9)
    # Predictions 1,1,1,1,0,0 -> true NORMAL: 2 right, 1 called TB; true TB: 3 right.
    assert metrics["confusion_matrix"] == [[2, 1], [0, 3]]
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["recall_NORMAL"] == pytest.approx(2 / 3)
    assert metrics["recall_TB"] == pytest.approx(1.0)
    assert metrics["balanced_accuracy"] == pytest.approx(5 / 6)
    # F1 NORMAL = 2*2/(3+2) = 0.8, F1 TB = 2*3/(3+4) = 6/7.
    assert metrics["macro_f1"] == pytest.approx((0.8 + 6 / 7) / 2)


def test_imbalanced_multiclass_balanced_accuracy_f1_and_ovr_auroc():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    probs = np.full((10, 3), 0.1)
    probs[np.arange(10), predicted] = 0.8
    metrics = classification_metrics(torch.tensor(probs), torch.tensor(labels), ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(0.7)
    # Recalls 6/6, 1/2, 0/2: plain accuracy 0.7 hides the missed minority classes.
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    assert [metrics["recall_a"], metrics["recall_b"], metrics["recall_c"]] == [1.0, 0.5, 0.0]
    # F1: a = 12/15, b = 2/3, c = 0.
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)
    # One-vs-rest AUROC: a = (6 + 18/2)/24 = 0.625, b = (8 + 8/2)/16 = 0.75, c all tied = 0.5.
    assert metrics["auroc"] == pytest.approx((0.625 + 0.75 + 0.5) / 3)


def test_class_absent_from_labels_is_nan_recall_and_left_out_of_averages():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1]])
    labels = np.array([0, 1, 0, 1])
    metrics = classification_metrics(probs, labels, ["x", "y", "z"])
    assert math.isnan(metrics["recall_z"])
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    # z is predicted once, so it counts in macro F1 with F1 0: (0.5 + 2/3 + 0) / 3.
    assert metrics["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 3)
    # OvR AUROC: x = 2.5/4, y = 4/4, z undefined (no positives) and skipped.
    assert metrics["auroc"] == pytest.approx((0.625 + 1.0) / 2)


def test_auroc_is_nan_when_only_one_class_is_present():
    metrics = classification_metrics(BINARY_PROBS[:2], np.array([1, 1]), ["NORMAL", "TB"])
    assert math.isnan(metrics["auroc"])
    assert math.isnan(metrics["recall_NORMAL"])


def test_classification_metrics_reject_bad_inputs():
    with pytest.raises(ConfigError, match="probs have 2 columns but 3 class names"):
        classification_metrics(BINARY_PROBS, BINARY_LABELS, ["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"labels must have shape \(6,\)"):
        classification_metrics(BINARY_PROBS, BINARY_LABELS[:5], ["a", "b"])
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 2\)"):
        classification_metrics(BINARY_PROBS, BINARY_LABELS + 1, ["a", "b"])
    with pytest.raises(ConfigError, match="NaN or infinite"):
        classification_metrics(BINARY_PROBS * np.nan, BINARY_LABELS, ["a", "b"])


def test_label_free_metrics_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    metrics = label_free_metrics(probs, teacher_labels=np.array([0, 1, 0, 1]))
    # mean p = (0.6, 0.4): H = 0.6730117; row entropies 0.3250830 x3 and ln 2 -> mean 0.4170990.
    assert metrics["marginal_entropy"] == pytest.approx(0.6730117, abs=1e-6)
    assert metrics["mean_entropy"] == pytest.approx(0.4170990, abs=1e-6)
    assert metrics["information_maximization"] == pytest.approx(0.2559127, abs=1e-6)
    assert metrics["effective_classes"] == pytest.approx(1.9601317, abs=1e-6)
    # argmax of the (.5, .5) row is class 0 -> predictions 0, 0, 0, 1.
    assert metrics["max_class_share"] == pytest.approx(0.75)
    assert metrics["collapsed"] == 0.0
    assert metrics["teacher_agreement"] == pytest.approx(0.75)
    assert label_free_metrics(probs, collapse_threshold=0.7)["collapsed"] == 1.0
    assert "teacher_agreement" not in label_free_metrics(probs)


def test_single_class_predictions_are_flagged_as_collapsed():
    probs = torch.tensor([[0.8, 0.2]] * 5)
    metrics = label_free_metrics(probs)
    assert metrics["max_class_share"] == 1.0
    assert metrics["collapsed"] == 1.0
    # A uniform marginal gives log K and K effective classes.
    balanced = label_free_metrics(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert balanced["information_maximization"] == pytest.approx(math.log(2))
    assert balanced["effective_classes"] == pytest.approx(2.0)


def test_label_free_metrics_reject_bad_inputs():
    with pytest.raises(ConfigError, match="collapse_threshold must be in"):
        label_free_metrics(BINARY_PROBS, collapse_threshold=0.0)
    with pytest.raises(ConfigError, match=r"teacher_labels must have shape \(6,\)"):
        label_free_metrics(BINARY_PROBS, teacher_labels=np.array([0, 1]))
    with pytest.raises(ConfigError, match="probs must have shape"):
        label_free_metrics(np.zeros(3))


def test_ece_and_brier_on_known_probabilities():
    from medguna.method.metrics import brier_score, expected_calibration_error

    # Confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (right), each alone in its bin.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)
    # Squared errors per image: 0.02, 1.28, 0.18, 0.32.
    assert brier_score(probs, labels) == pytest.approx(1.8 / 4)
    # Ten images at confidence 0.7, seven right: calibrated.
    calibrated = np.tile([0.7, 0.3], (10, 1))
    assert expected_calibration_error(calibrated, np.array([0] * 7 + [1] * 3)) == pytest.approx(0.0)
    metrics = classification_metrics(probs, labels, ["a", "b"])
    assert (metrics["ece"], metrics["brier"]) == pytest.approx((0.4, 0.45))
