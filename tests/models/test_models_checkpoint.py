"""Loading checkpoints: release layout round trip, safetensors, zip, and every bad input."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch

from medguna.errors import CheckpointError
from medguna.models import load_medclip_checkpoint, save_released_format
from medguna.models.checkpoint import BIN_NAME, released_state_dict
from medguna.models.checkpoint_keys import released_state_dict_keys
from medguna.models.medclip import MedClipModel, build_medclip
from medguna.models.medclip_config import CONFIG_FILE_NAME, test_size_config
from medguna.models.tokenizer import load_tokenizer


def _outputs(model: MedClipModel) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randn(1, 3, 224, 224, generator=generator)
    input_ids = torch.randint(5, 60, (2, 9), generator=generator)
    mask = torch.ones_like(input_ids)
    model.eval()
    with torch.no_grad():
        return model.vision_model(pixels), model.text_model(input_ids, mask)


def _copy_with(source: Path, target: Path, state: dict[str, torch.Tensor]) -> Path:
    target.mkdir()
    shutil.copy(source / CONFIG_FILE_NAME, target / CONFIG_FILE_NAME)
    torch.save(state, target / BIN_NAME)
    return target


def test_release_layout_round_trip_gives_identical_outputs(tmp_path):
    original = build_medclip(test_size_config(), seed=11)
    save_released_format(original, tmp_path)
    saved = torch.load(tmp_path / BIN_NAME, weights_only=True)
    assert list(saved) == released_state_dict_keys(test_size_config())
    block = "vision_model.model.encoder.layers.0.blocks.1."
    assert torch.equal(
        saved[block + "attention.self.query.weight"],
        original.vision_model.model.encoder.layers[0].blocks[1].attention.q_proj.weight,
    )
    assert saved[block + "attention.self.relative_position_index"].shape == (49, 49)
    assert saved["text_model.model.embeddings.position_ids"].shape == (1, 128)

    loaded = load_medclip_checkpoint(tmp_path)
    assert loaded.report.ok
    assert loaded.report.counts() == {
        "used": 209,
        "recomputed": 9,
        "dropped": 0,
        "missing": 0,
        "unexpected": 0,
        "misshaped": 0,
    }
    assert loaded.report.total_entries == 218
    for before, after in zip(_outputs(original), _outputs(loaded.model), strict=True):
        assert torch.equal(before, after)


def test_safetensors_in_either_layout_and_release_zip(tmp_path):
    original = build_medclip(test_size_config(), seed=5)
    reference = _outputs(original)
    released = released_state_dict(original)

    old_layout = tmp_path / "old"
    old_layout.mkdir()
    original.config.save(old_layout)
    safetensors.torch.save_file(released, old_layout / "model.safetensors")
    new_layout = tmp_path / "new"
    new_layout.mkdir()
    original.config.save(new_layout)
    safetensors.torch.save_file(original.state_dict(), new_layout / "model.safetensors")

    release = tmp_path / "release"
    save_released_format(original, release)
    with zipfile.ZipFile(tmp_path / "medclip-vit-pretrained.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(release / BIN_NAME, "medclip-vit-pretrained/pytorch_model.bin")
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    shutil.move(tmp_path / "medclip-vit-pretrained.zip", zipped / "medclip-vit-pretrained.zip")
    original.config.save(zipped)

    for folder in (old_layout, new_layout, zipped, zipped / "medclip-vit-pretrained.zip"):
        loaded = load_medclip_checkpoint(folder)
        for before, after in zip(reference, _outputs(loaded.model), strict=True):
            assert torch.equal(before, after), folder
    assert load_medclip_checkpoint(old_layout).report.counts()["recomputed"] == 9
    assert load_medclip_checkpoint(new_layout).report.counts()["recomputed"] == 0


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist.*pytorch_model\.bin"):
        load_medclip_checkpoint(tmp_path / "nowhere")


def test_directory_without_weights(tmp_path):
    (tmp_path / "README.txt").write_text("weights go here")
    with pytest.raises(CheckpointError, match=r"no weights file .*README\.txt"):
        load_medclip_checkpoint(tmp_path)


def test_truncated_weights_file(tmp_path, test_size_dir):
    folder = tmp_path / "truncated"
    folder.mkdir()
    shutil.copy(test_size_dir / CONFIG_FILE_NAME, folder)
    data = (test_size_dir / BIN_NAME).read_bytes()
    (folder / BIN_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated, corrupt.*Download it again"):
        load_medclip_checkpoint(folder)


def test_corrupt_safetensors_and_zip(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_medclip_checkpoint(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "medclip-vit-pretrained.zip").write_bytes(b"PK not really a zip")
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_medclip_checkpoint(other)


def test_resnet_state_dict_is_not_medclip_vit(tmp_path):
    resnet = {
        "conv1.weight": torch.zeros(64, 3, 7, 7),
        "bn1.weight": torch.ones(64),
        "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3),
        "fc.weight": torch.zeros(1000, 2048),
    }
    torch.save(resnet, tmp_path / BIN_NAME)
    with pytest.raises(CheckpointError, match=r"is not a MedCLIP-ViT checkpoint.*conv1\.weight"):
        load_medclip_checkpoint(tmp_path)


def test_medclip_resnet_release_is_named(tmp_path, test_size_dir):
    state = torch.load(test_size_dir / BIN_NAME, weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("vision_model.model.")}
    state["vision_model.model.conv1.weight"] = torch.zeros(64, 3, 7, 7)
    folder = _copy_with(test_size_dir, tmp_path / "resnet", state)
    with pytest.raises(CheckpointError, match="MedCLIP-ResNet"):
        load_medclip_checkpoint(folder)


def test_wrong_shape_names_key_and_shapes(tmp_path, test_size_dir):
    state = torch.load(test_size_dir / BIN_NAME, weights_only=True)
    key = "vision_model.projection_head.weight"
    state[key] = torch.zeros(256, 192)
    folder = _copy_with(test_size_dir, tmp_path / "shape", state)
    with pytest.raises(CheckpointError) as caught:
        load_medclip_checkpoint(folder)
    assert f"{key}: (512, 192) -> (256, 192)" in str(caught.value)
    assert "misshaped 1" in str(caught.value)


def test_full_size_config_rejects_test_size_weights(tmp_path, test_size_dir):
    folder = tmp_path / "no-config"
    folder.mkdir()
    shutil.copy(test_size_dir / BIN_NAME, folder)  # no config json: read as the full-size release
    with pytest.raises(CheckpointError, match=r"keys of the wrong shape.*\n.*->"):
        load_medclip_checkpoint(folder)


def test_missing_and_unexpected_keys_are_listed(tmp_path, test_size_dir):
    state = torch.load(test_size_dir / BIN_NAME, weights_only=True)
    del state["text_model.model.pooler.dense.bias"]
    state["text_model.model.extra_head.weight"] = torch.zeros(3)
    folder = _copy_with(test_size_dir, tmp_path / "keys", state)
    with pytest.raises(CheckpointError) as caught:
        load_medclip_checkpoint(folder)
    message = str(caught.value)
    assert "missing keys: text_model.model.pooler.dense.bias" in message
    assert "unexpected keys: text_model.model.extra_head.weight" in message


def test_changed_recomputed_buffer_is_rejected(tmp_path, test_size_dir):
    state = torch.load(test_size_dir / BIN_NAME, weights_only=True)
    state["text_model.model.embeddings.position_ids"] = torch.zeros(1, 128, dtype=torch.long)
    folder = _copy_with(test_size_dir, tmp_path / "buffer", state)
    with pytest.raises(CheckpointError, match="position_ids differs from the one rebuilt"):
        load_medclip_checkpoint(folder)


def test_non_tensor_pickle_is_refused(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / BIN_NAME)
    with pytest.raises(CheckpointError, match="flat state dict of tensors"):
        load_medclip_checkpoint(tmp_path)


def test_tokenizer_directory_without_vocab(tmp_path):
    with pytest.raises(CheckpointError, match=r"has no vocab\.txt.*Bio_ClinicalBERT"):
        load_tokenizer(tmp_path)
    with pytest.raises(CheckpointError, match="tokenizer directory .* does not exist"):
        load_tokenizer(tmp_path / "missing")


def test_token_type_ids_buffer_is_knowingly_dropped(tmp_path, test_size_dir):
    state = torch.load(test_size_dir / BIN_NAME, weights_only=True)
    state["text_model.model.embeddings.token_type_ids"] = torch.zeros(1, 128, dtype=torch.long)
    folder = _copy_with(test_size_dir, tmp_path / "dropped", state)
    report = load_medclip_checkpoint(folder).report
    assert report.dropped == ["text_model.model.embeddings.token_type_ids"]
    assert report.total_entries == 219 and report.ok
