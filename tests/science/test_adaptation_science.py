"""Tests that guard the science, not the shapes (issue 12).

They run the shipped demonstration encoder through the same trial function a study runs, on the
synthetic stand-ins under their modality's `demo` acquisition shift, and check what a regression
in the encoder, the data or the method would break: zero-shot is above chance (the encoder has
learnt something that survives the shift), the stage-1 teacher gets its accuracy from the class
descriptions (a negative control that shuffles their class labels brings it back to chance), and a
default trial gains over zero-shot where the shift benchmark shows a gain, a gain the same negative
control takes away.
"""

from __future__ import annotations

import pytest

from medguna.compose import compose_study
from medguna.config import apply_method_params
from medguna.data.datasets import get_dataset
from medguna.trial.loop import run_trial
from medguna.trial.reporting import PrintReporter

# Stand-ins at twice the default size: test splits of 30-60 images, so a balanced accuracy of the
# binary sets moves in steps of about 0.03.
SCALE = 2


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("science-cache")


def trial(cache_dir, dataset: str, control: str = "none", **method) -> dict:
    study = compose_study([f"storage.cache_dir={cache_dir}", f"data.synthetic_scale={SCALE}",
                           f"runtime.control={control}"], search=False)
    params = {**study.study.demo_method, **method}
    cfg = study.trial_config(dataset, apply_method_params(study.method, params))
    return run_trial(cfg.validate(), PrintReporter(verbose=False))


# The stage-1 teacher's accuracy on Shenzhen's training images: 0.695 measured under the rebuilt
# chest preset (exposure=0.11; 0.886 under the earlier one), against 0.514 with the
# descriptions' class labels shuffled.
TEACHER_FLOOR = 0.66
# Zero-shot floors on the shifted stand-ins, a little below what the shipped encoder measures here
# (0.719, 0.861, 0.558 under the chest preset exposure=0.11, measured with
# benchmarks/stand_in_validity.py --scale 2 --draw-seed 0 --split-seed 0; 0.239 under the fundus
# preset gamma=0.6, 0.411) and above chance: 0.5, 0.5, 0.5, 1/5 and 1/7. The chest and fundus presets
# are built so that zero-shot misreads the shifted images while a probe does not
# (docs/demonstration.md), so Guangzhou's and IDRiD's sit near chance.
ZERO_SHOT_FLOORS = {"shenzhen": 0.67, "montgomery": 0.8, "guangzhou": 0.52, "idrid": 0.22, "isic2018": 0.33}
# A default trial on ISIC (method seed and split seed as configured): 0.567 balanced accuracy against
# zero-shot's 0.411 measured; with the descriptions' class labels shuffled, 0.19.
ISIC_DEFAULT_GAIN_FLOOR = 0.08


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(ZERO_SHOT_FLOORS))
def test_demo_encoder_zero_shot_is_above_chance_on_the_shifted_standin(cache_dir, dataset):
    final = trial(cache_dir, dataset, prompt_length=0, stage1_steps=10, stage2_epochs=1)
    assert final["checkpoint"] == "demo" and final["synthetic_shift"] not in ("", "none")
    chance = 1 / get_dataset(dataset).num_classes
    zero_shot = final["zeroshot_test_balanced_accuracy"]
    assert zero_shot >= ZERO_SHOT_FLOORS[dataset] > chance, (dataset, zero_shot)
    assert zero_shot < 0.95  # the shift leaves room to adapt: a ceiling would make every trial tie


@pytest.mark.slow
def test_stage1_teacher_learns_from_the_descriptions_and_a_label_shuffle_destroys_it(cache_dir):
    """The teacher's pseudo-labels are worth what stage 1 learnt from the class descriptions: with
    the sentences' class labels permuted (same counts per class) it falls back to chance."""
    common = {"prompt_length": 0, "stage2_epochs": 1}
    real = trial(cache_dir, "shenzhen", **common)
    shuffled = trial(cache_dir, "shenzhen", control="shuffled_description_labels", **common)
    assert real["control"] == "none" and shuffled["control"] == "shuffled_description_labels"
    assert real["pseudo_label_accuracy"] >= TEACHER_FLOOR
    assert shuffled["pseudo_label_accuracy"] <= 0.6 < TEACHER_FLOOR
    # Same images, same zero-shot: only the teacher differs.
    assert shuffled["zeroshot_test_balanced_accuracy"] == real["zeroshot_test_balanced_accuracy"]


@pytest.mark.slow
def test_the_oracle_control_trains_stage2_on_the_true_labels_and_leaves_the_teacher_alone(cache_dir):
    """`oracle_pseudo_labels` swaps the teacher's stage-2 targets for the training images' labels
    (every target right) and changes nothing else: the same teacher scores validation as before."""
    common = {"prompt_length": 0, "stage2_epochs": 1}
    real = trial(cache_dir, "shenzhen", **common)
    oracle = trial(cache_dir, "shenzhen", control="oracle_pseudo_labels", **common)
    assert oracle["control"] == "oracle_pseudo_labels"
    assert real["pseudo_label_accuracy"] < 1.0 == oracle["pseudo_label_accuracy"]
    assert oracle["stage1_val_balanced_accuracy"] == real["stage1_val_balanced_accuracy"]
    assert oracle["zeroshot_test_balanced_accuracy"] == real["zeroshot_test_balanced_accuracy"]


@pytest.mark.slow
def test_a_default_trial_gains_over_zero_shot_and_shuffled_descriptions_take_the_gain_away(cache_dir):
    """ISIC under the skin `demo` shift, where the shift benchmark's gain interval excludes zero: the
    corrected variant's default trial beats zero-shot on the test split, and the same trial with the
    descriptions' class labels permuted (a broken stage-1 signal, same sentences and counts) does
    not. The gain comes from what MedUnA learns from the descriptions, not from the trial running."""
    real = trial(cache_dir, "isic2018")
    broken = trial(cache_dir, "isic2018", control="shuffled_description_labels")
    zero_shot = real["zeroshot_test_balanced_accuracy"]
    assert broken["zeroshot_test_balanced_accuracy"] == zero_shot  # same images, same encoder
    assert compose_study([], search=False).method.prompt_length > 0  # the default tunes visual prompts
    assert real["test_balanced_accuracy"] >= zero_shot + ISIC_DEFAULT_GAIN_FLOOR, (real["test_balanced_accuracy"], zero_shot)
    assert broken["test_balanced_accuracy"] < zero_shot, (broken["test_balanced_accuracy"], zero_shot)


# A default trial on the rebuilt Shenzhen stand-in at this scale and draw: 0.781 test balanced
# accuracy against zero-shot's 0.719 (selection kept the stage-1 teacher); 0.500 with the
# descriptions' class labels shuffled. The pre-registered benchmark (docs/demonstration.md) gains on
# Shenzhen in every seed at scale 5.
SHENZHEN_DEFAULT_GAIN_FLOOR = 0.04


@pytest.mark.slow
def test_a_default_trial_gains_on_the_rebuilt_chest_standin_and_shuffled_descriptions_take_it_away(cache_dir):
    """Shenzhen under the rebuilt chest preset (an underexposed film that zero-shot misreads): the
    corrected defaults beat zero-shot on test, and the negative control falls below it."""
    real = trial(cache_dir, "shenzhen")
    broken = trial(cache_dir, "shenzhen", control="shuffled_description_labels")
    zero_shot = real["zeroshot_test_balanced_accuracy"]
    assert broken["zeroshot_test_balanced_accuracy"] == zero_shot
    assert real["test_balanced_accuracy"] >= zero_shot + SHENZHEN_DEFAULT_GAIN_FLOOR, (real["test_balanced_accuracy"], zero_shot)
    assert broken["test_balanced_accuracy"] < zero_shot, (broken["test_balanced_accuracy"], zero_shot)
