"""Selection with stage 1 alone as a candidate ("epoch 0", runtime.selection_includes_stage1): a
stage 2 that makes the model worse on validation is not what the trial reports.

The shipped demonstration encoder on the synthetic Shenzhen stand-in (its teacher labels 0.89 of the
training images correctly); stage 2 is broken on purpose by the shuffled-pseudo-label control with a
large learning rate (validation balanced accuracy 0.21 after it, against the teacher's 0.71).
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from medguna.compose import compose_study
from medguna.config import apply_method_params
from medguna.method.selection import best_so_far
from medguna.trial.loop import run_trial
from medguna.trial.predictions import read_predictions
from medguna.trial.reporting import PrintReporter


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stage1-selection-cache")


def _trial(cache_dir, tmp_path, *overrides: str) -> dict:
    study = compose_study([f"storage.cache_dir={cache_dir}", "runtime.control=shuffled_pseudo_labels",
                           "data.synthetic_scale=1", *overrides], search=False)
    params = {**study.study.demo_method, "prompt_length": 0, "stage2_lr": 0.5, "stage2_optimizer": "adamw"}
    cfg = study.trial_config("shenzhen", apply_method_params(study.method, params)).validate()
    return run_trial(cfg, PrintReporter(verbose=False), log_dir=tmp_path)


@pytest.mark.slow
def test_a_stage2_that_hurts_on_validation_reports_stage1_alone(cache_dir, tmp_path):
    final = _trial(cache_dir, tmp_path / "with")
    assert final["selected_epoch"] == 0
    assert final["objective_selected"] == final["stage1_val_balanced_accuracy"] > final["val_balanced_accuracy"]
    assert final["stage1_val_teacher_agreement"] == 1.0  # stage 1 alone is the teacher
    # Its test figures and predictions are the teacher's on the clean test features.
    preds = read_predictions(tmp_path / "with" / "predictions.parquet")
    adapted_test = preds.filter((pl.col("model") == "adapted") & (pl.col("split") == "test"))
    assert adapted_test["epoch"].unique().to_list() == [0]
    correct = (adapted_test["predicted"] == adapted_test["label"]).mean()
    assert correct == pytest.approx(final["test_accuracy"], abs=1e-9)

    # Without stage 1 as a candidate, the same trial reports its best (broken) stage-2 epoch.
    without = _trial(cache_dir, tmp_path / "without", "runtime.selection_includes_stage1=false")
    assert without["selected_epoch"] >= 1 and "stage1_val_balanced_accuracy" not in without
    assert without["test_balanced_accuracy"] < final["test_balanced_accuracy"]
    assert without["zeroshot_test_balanced_accuracy"] == final["zeroshot_test_balanced_accuracy"]


def test_the_objective_so_far_counts_stage1_when_it_competes():
    history = [{"val_balanced_accuracy": 0.6}, {"val_balanced_accuracy": math.nan}, {"val_balanced_accuracy": 0.7}]
    assert best_so_far(history, "val_balanced_accuracy") == 0.7
    assert best_so_far(history, "val_balanced_accuracy", 0.8) == 0.8
    assert best_so_far(history[:1], "val_balanced_accuracy", 0.5) == 0.6


def test_stage1_never_competes_on_a_criterion_it_meets_by_construction():
    from medguna.method.selection import stage1_candidate

    stage1 = {"val_balanced_accuracy": 0.7, "val_teacher_agreement": 1.0}
    assert stage1_candidate("val_balanced_accuracy", stage1) == 0.7
    # Stage 1 agrees with its own labels: 1.0 would beat every stage-2 epoch, whatever it does.
    assert stage1_candidate("val_teacher_agreement", stage1) is None
    history = [{"val_teacher_agreement": 0.8}, {"val_teacher_agreement": 0.9}]
    assert best_so_far(history, "val_teacher_agreement",
                       stage1_candidate("val_teacher_agreement", stage1)) == 0.9
