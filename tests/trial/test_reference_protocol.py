"""runtime.protocol=reference: stage 2 on every non-test image, test read every epoch, and the
reference's optimistic figure (best test epoch) reported apart as test_selected_*.

One small synthetic IDRiD (official test split) and the test-size MedCLIP, on CPU, in tmp folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medguna.config import DataConfig, MethodConfig, RuntimeConfig, TrialConfig
from medguna.data.synthetic import synthesize
from medguna.errors import ConfigError
from medguna.trial.loop import Stage2TrainingSet, mixed_precision, run_trial
from medguna.trial.reporting import PrintReporter


@pytest.fixture(scope="module")
def idrid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize("idrid", tmp_path_factory.mktemp("data") / "idrid", seed=3, scale=0.4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: decoded images, features and feature banks are built once."""
    return tmp_path_factory.mktemp("cache")


def _config(cache: Path, root: Path, protocol: str, **method) -> TrialConfig:
    settings = {"stage1_steps": 10, "stage2_epochs": 3, "batch_size": 10, "prompt_length": 0,
                "description_source": "templates", "preprocessing": "clip", **method}
    return TrialConfig(
        data=DataConfig(dataset="idrid", root=str(root), cache_dir=str(cache)),
        method=MethodConfig(**settings),
        # Stage 1 alone is no candidate here: these tests compare the selected epoch's readings.
        runtime=RuntimeConfig(cpu=True, eval_batch_size=32, feature_bank_views=2, protocol=protocol,
                              selection_includes_stage1=False),
    ).validate()


def _split_sizes(cache: Path, root: Path) -> dict[str, int]:
    from medguna.trial.prepare import load_trial_manifest

    manifest = load_trial_manifest(_config(cache, root, "validation"))
    return {split: len(manifest.paths(split)) for split in ("train", "val", "test")}


def test_reference_protocol_trains_on_all_non_test_images_and_reports_test_selected_apart(
        cache: Path, idrid_root: Path):
    sizes = _split_sizes(cache, idrid_root)
    reporter = PrintReporter(verbose=False)
    final = run_trial(_config(cache, idrid_root, "reference", variant="reference"), reporter)
    epochs = reporter.rows
    # The reference adapts on all of its training images: medguna's train and val splits together.
    assert [row["stage2_images"] for row in epochs] == [sizes["train"] + sizes["val"]] * 3
    assert final["protocol"] == "reference"
    test_acc = [row["test_epoch_accuracy"] for row in epochs]
    assert all(0.0 <= value <= 1.0 for value in test_acc)
    best = max(range(3), key=lambda i: (test_acc[i], -i)) + 1
    assert final["test_selected_epoch"] == best
    assert final["test_selected_accuracy"] == max(test_acc)
    assert final["test_selected_balanced_accuracy"] == epochs[best - 1]["test_epoch_balanced_accuracy"]
    assert final["test_selected_note"] == "optimistic: chosen on test, as the reference reports"
    # The objective and test_* stay validation-selected; evaluation is deterministic, so the test
    # figure at the validation-selected epoch equals that epoch's own test reading.
    selected = final["selected_epoch"]
    assert final["objective_selected"] == epochs[selected - 1]["val_balanced_accuracy"]
    assert final["test_accuracy"] == pytest.approx(epochs[selected - 1]["test_epoch_accuracy"])
    # The reference variant crops strong views from whole images, cached at 448 px with their sizes.
    whole = sorted(p.name for p in (cache / "images").glob("images_whole_clip_448_*.npy"))
    assert len(whole) == 4 and sum(name.endswith(".sizes.npy") for name in whole) == 2


def test_validation_protocol_trains_on_train_only_and_never_reads_test_per_epoch(cache: Path,
                                                                                  idrid_root: Path):
    sizes = _split_sizes(cache, idrid_root)
    reporter = PrintReporter(verbose=False)
    final = run_trial(_config(cache, idrid_root, "validation", stage2_epochs=2), reporter)
    assert [row["stage2_images"] for row in reporter.rows] == [sizes["train"]] * 2
    assert final["protocol"] == "validation"
    assert not any(key.startswith(("test_epoch_", "test_selected_")) for row in reporter.rows for key in row)


def test_unknown_protocol_is_refused_with_the_choices(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"runtime.protocol='test'.*'validation', 'reference'"):
        TrialConfig(runtime=RuntimeConfig(protocol="test")).validate()


@pytest.mark.parametrize("control", ["oracle_pseudo_labels", "shuffled_pseudo_labels"])
def test_a_pseudo_label_control_is_refused_under_the_reference_protocol(tmp_path: Path, control):
    # Stage 2 would also train on validation images, which keep the teacher's labels.
    with pytest.raises(ConfigError, match=rf"runtime.control={control} with runtime.protocol=reference.*"
                                          "runtime.protocol=validation"):
        TrialConfig(runtime=RuntimeConfig(protocol="reference", control=control)).validate()
    # The same refusal reaches a study before Ray starts (composition validates).
    from medguna.compose import compose_study

    with pytest.raises(ConfigError, match="half|partial"):
        compose_study([f"storage.path={tmp_path}", f"runtime.control={control}", "runtime.protocol=reference"])
    TrialConfig(runtime=RuntimeConfig(protocol="validation", control=control)).validate()
    TrialConfig(runtime=RuntimeConfig(protocol="reference", control="shuffled_description_labels")).validate()


def test_training_set_gathers_across_splits_in_index_order():
    train = torch.arange(3 * 2, dtype=torch.uint8).view(3, 1, 1, 2)  # images 0, 1, 2
    val = torch.arange(100, 100 + 2 * 2, dtype=torch.uint8).view(2, 1, 1, 2)  # images 3, 4
    banks = [torch.arange(2 * 3 * 1, dtype=torch.float32).view(2, 3, 1),
             torch.arange(50, 50 + 2 * 2 * 1, dtype=torch.float32).view(2, 2, 1)]
    data = Stage2TrainingSet(("train", "val"), [train, val], torch.tensor([0, 1, 0, 1, 1]), banks)
    assert len(data) == 5
    picked = data.images_at(torch.tensor([4, 0, 3]))
    assert picked[:, 0, 0].tolist() == [[102, 103], [0, 1], [100, 101]]
    # bank[view, image]: train bank holds 0..5 as (view, image); val bank 50..53.
    assert data.bank_at(torch.tensor([1, 0, 1]), torch.tensor([4, 2, 0]))[:, 0].tolist() == [53.0, 2.0, 3.0]


def test_reference_variant_encodes_the_reference_texts():
    """The reference (trainers/LaFTer.py, utils/model_utils.py) formats each class name, '_' as
    space, into its 7 templates, then puts every text into 'a photo of a {} chest x_ray'."""
    from medguna.data.datasets import get_dataset
    from medguna.trial.prepare import stage1_texts

    reference = MethodConfig(variant="reference", prompt_length=0, description_source="templates")
    texts, labels, _ = stage1_texts(reference, get_dataset("idrid"))
    assert texts[7:14] == [
        "a photo of a a bad photo of the Stage 1 Retinopathy. chest x_ray",
        "a photo of a a blurred photo of the Stage 1 Retinopathy . chest x_ray",
        "a photo of a a dark photo Stage 1 Retinopathy. chest x_ray",
        "a photo of a a photo of the small Stage 1 Retinopathy. chest x_ray",
        "a photo of a a photo of the vague Stage 1 Retinopathy. chest x_ray",
        "a photo of a a photo of the large Stage 1 Retinopathy. chest x_ray",
        "a photo of a a centered photo of aStage 1 Retinopathy. chest x_ray",
    ]
    assert labels[7:14] == [1] * 7 and len(texts) == 35
    corrected, _, _ = stage1_texts(MethodConfig(description_source="templates"), get_dataset("idrid"))
    assert corrected[9] == "fundus photograph: a dark photo of the Stage 1 Retinopathy."


def test_reference_variant_trains_in_fp32_unless_precision_is_set():
    reference = TrialConfig(method=MethodConfig(variant="reference", prompt_length=0))
    assert mixed_precision(reference) == "no"
    reference.runtime.mixed_precision = "bf16"
    assert mixed_precision(reference) == "bf16"
