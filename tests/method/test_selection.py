"""Epoch selection: best value, earliest tie, NaN skipped, test metrics refused."""

import math

import pytest

from medguna.errors import ConfigError, TrialError
from medguna.method.selection import select_epoch

HISTORY = [
    {"val_balanced_accuracy": math.nan, "test_accuracy": 0.99},
    {"val_balanced_accuracy": 0.5, "test_accuracy": 0.1},
    {"val_balanced_accuracy": 0.7, "test_accuracy": 0.2},
    {"val_balanced_accuracy": 0.7, "test_accuracy": 0.3},
    {"val_balanced_accuracy": 0.6, "test_accuracy": 0.4},
]


def test_max_picks_earliest_of_tied_best_and_skips_nan():
    assert select_epoch(HISTORY, "val_balanced_accuracy") == 2


def test_min_mode():
    assert select_epoch(HISTORY, "val_balanced_accuracy", mode="min") == 1


def test_test_metrics_are_refused():
    with pytest.raises(ConfigError, match="'test_accuracy' is a test metric"):
        select_epoch(HISTORY, "test_accuracy")


def test_missing_objective_names_available_keys():
    with pytest.raises(ConfigError, match="missing from epoch 0.*val_balanced_accuracy"):
        select_epoch(HISTORY, "val_information_maximization")


def test_bad_mode_empty_history_and_all_nan():
    with pytest.raises(ConfigError, match="mode must be 'max' or 'min'"):
        select_epoch(HISTORY, "val_balanced_accuracy", mode="best")
    with pytest.raises(TrialError, match="recorded no epochs"):
        select_epoch([], "val_balanced_accuracy")
    with pytest.raises(TrialError, match="NaN in all 2 epochs"):
        select_epoch([{"val_x": math.nan}, {"val_x": math.nan}], "val_x")
