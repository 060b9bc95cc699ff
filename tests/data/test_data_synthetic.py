"""Synthetic stand-ins: layout, determinism, counts, speed, class-dependent structure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medguna.data.images import decode_image
from medguna.data.manifest import SYNTHETIC_MARKER, load_manifest
from medguna.data.synthetic import DEFAULT_COUNTS, synthesize
from medguna.errors import ConfigError, DataError


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = synthesize("idrid", tmp_path / "a", seed=3, scale=0.3)
    b = synthesize("idrid", tmp_path / "b", seed=3, scale=0.3)
    c = synthesize("idrid", tmp_path / "c", seed=4, scale=0.3)
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    assert files_a["B. Disease Grading/1. Original Images/a. Training Set/IDRiD_001.jpg"] != \
        files_c["B. Disease Grading/1. Original Images/a. Training Set/IDRiD_001.jpg"]


def test_default_set_is_fast_and_its_marker_matches(tmp_path):
    start = time.perf_counter()
    root = synthesize("isic2018", tmp_path / "isic", seed=0)
    assert time.perf_counter() - start < 5.0
    marker = json.loads((root / SYNTHETIC_MARKER).read_text())
    assert marker["dataset"] == "isic2018" and marker["seed"] == 0
    assert marker["counts"]["val"]["DF"] == 2 and marker["counts"]["train"]["NV"] == 40
    assert sum(sum(split.values()) for split in marker["counts"].values()) == 138


def test_scale_multiplies_counts_and_image_size_sets_the_longer_side(tmp_path):
    root = synthesize("guangzhou", tmp_path / "g", scale=2.0, image_size=64)
    manifest = load_manifest("guangzhou", root, tmp_path / "splits")
    expected = sum(2 * n for per_class in DEFAULT_COUNTS["guangzhou"].values() for n in per_class)
    assert manifest.table.height == expected
    for path in manifest.paths("test"):
        with Image.open(path) as image:
            assert max(image.size) == 64


def test_montgomery_is_12_bit_data_in_16_bit_png(synthetic_roots):
    path = synthetic_roots["montgomery"] / "CXR_png" / "MCUCXR_0001_0.png"
    with Image.open(path) as image:
        assert image.mode.startswith("I")
        raw = np.asarray(image)
    assert 255 < raw.max() <= 4095
    assert np.asarray(decode_image(path, "L")).max() > 200  # scaled, not near-black


def test_rerun_is_a_no_op_and_foreign_folders_are_refused(tmp_path):
    root = synthesize("shenzhen", tmp_path / "s", scale=0.2)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert synthesize("shenzhen", root, scale=0.2) == root
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    with pytest.raises(DataError, match="is not empty"):
        synthesize("shenzhen", root, scale=0.5)
    with pytest.raises(ConfigError, match="scale must be positive"):
        synthesize("shenzhen", tmp_path / "x", scale=0)
    with pytest.raises(ConfigError, match="image_size must be 32-1024"):
        synthesize("shenzhen", tmp_path / "x", image_size=8)


def _mean_by_label(manifest, color, region):
    means = {}
    for path, label in manifest.table.select("path", "label").iter_rows():
        pixels = np.asarray(decode_image(path, color).resize((64, 64)), dtype=np.float64)
        means.setdefault(label, []).append(region(pixels))
    return {label: float(np.mean(values)) for label, values in means.items()}


def test_classes_differ_in_the_expected_places(synthetic_roots, tmp_path):
    # pneumonia: lower lung zones more opaque (brighter) than in normal films
    chest = load_manifest("guangzhou", synthetic_roots["guangzhou"], tmp_path)
    lower = _mean_by_label(chest, "L", lambda p: p[36:54, 10:54].mean())
    assert lower[1] > lower[0] + 5
    # retinopathy: more bright-yellow exudate pixels at grade 4 than at grade 0
    fundus = load_manifest("idrid", synthetic_roots["idrid"], tmp_path)
    exudate = _mean_by_label(fundus, "RGB", lambda p: ((p[..., 1] > 170) & (p[..., 2] < 120)).sum())
    assert exudate[4] > exudate[0]
    # melanoma: darker lesion centre than benign keratosis
    skin = load_manifest("isic2018", synthetic_roots["isic2018"], tmp_path)
    centre = _mean_by_label(skin, "L", lambda p: p[24:40, 24:40].mean())
    assert centre[0] < centre[4] - 20


def test_trial_config_synthetic_seed_picks_the_draw_and_is_checked(tmp_path):
    """data.synthetic_seed reaches the stand-in a trial loads: another draw, same layout and counts."""
    from medguna.config import DataConfig, TrialConfig
    from medguna.trial.prepare import load_trial_manifest

    def manifest(seed):
        data = DataConfig(dataset="montgomery", cache_dir=str(tmp_path), synthetic_scale=0.3, synthetic_seed=seed)
        return load_trial_manifest(TrialConfig(data=data).validate())

    first, again, other = manifest(0), manifest(0), manifest(5)
    assert first.root == again.root != other.root
    assert first.synthetic_info["seed"] == 0 and other.synthetic_info["seed"] == 5
    assert first.synthetic_info["counts"] == other.synthetic_info["counts"]
    image = Path(first.paths("test")[0])
    twin = other.root / image.relative_to(first.root)
    assert twin.is_file() and twin.read_bytes() != image.read_bytes()
    with pytest.raises(ConfigError, match="data.synthetic_seed"):
        TrialConfig(data=DataConfig(synthetic_seed=-1)).validate()
