"""synth -> parse -> manifest round trips for all five datasets, and the official splits."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from medguna.data.datasets import get_dataset
from medguna.data.manifest import SYNTHETIC_MARKER, load_manifest
from medguna.data.synthetic import DEFAULT_COUNTS

ALL = ("shenzhen", "montgomery", "guangzhou", "idrid", "isic2018")


def _holdout(n: int, fraction: float) -> int:
    # The rule the splitter follows: round(n * f), at least 1, leaving at least 1 behind.
    return min(n - 1, max(1, round(n * fraction)))


@pytest.mark.parametrize("name", ALL)
def test_round_trip_counts_class_order_and_columns(name, synthetic_roots, tmp_path):
    manifest = load_manifest(name, synthetic_roots[name], tmp_path / "splits")
    spec = get_dataset(name)
    assert manifest.spec == spec
    assert manifest.is_synthetic
    assert manifest.table.columns == ["path", "label", "class_name", "split"]
    assert manifest.table.schema["label"] == pl.Int64
    # class_name is the label's entry in the spec's class order
    for label, class_name in manifest.table.select("label", "class_name").unique().iter_rows():
        assert spec.classes[label] == class_name
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in manifest.table["path"])
    counts = manifest.counts()
    assert counts["split"].to_list() == ["train", "val", "test"]
    assert counts.columns[1:-1] == list(spec.classes)
    written = json.loads((synthetic_roots[name] / SYNTHETIC_MARKER).read_text())["counts"]
    total_per_class = [sum(written[s][c] for s in written) for c in spec.classes]
    assert [counts[c].sum() for c in spec.classes] == total_per_class
    assert manifest.split_file.is_file()
    assert len(manifest.paths("train")) == manifest.labels("train").shape[0]
    assert manifest.labels("val").dtype == torch.long


def test_shenzhen_test_and_val_are_stratified_holdouts(synthetic_roots, tmp_path):
    manifest = load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path, test_fraction=0.25)
    normal, tb = DEFAULT_COUNTS["shenzhen"]["train"]  # 40, 42
    counts = {row["split"]: row for row in manifest.counts().iter_rows(named=True)}
    # test: round(40 * .25) = 10, round(42 * .25) = 10 (10.5 rounds to even); val: 20% of the rest
    assert (counts["test"]["NORMAL"], counts["test"]["TB"]) == (10, 10)
    assert (counts["val"]["NORMAL"], counts["val"]["TB"]) == (_holdout(30, 0.2), _holdout(32, 0.2)) == (6, 6)
    assert (counts["train"]["NORMAL"], counts["train"]["TB"]) == (24, 26)
    assert normal + tb == manifest.table.height


def test_guangzhou_official_test_and_kaggle_val_in_training_pool(synthetic_roots, tmp_path):
    manifest = load_manifest("guangzhou", synthetic_roots["guangzhou"], tmp_path)
    table = manifest.table
    test_paths = set(table.filter(pl.col("split") == "test")["path"].to_list())
    on_disk_test = {str(p) for p in (synthetic_roots["guangzhou"] / "chest_xray" / "test").rglob("*.jpeg")}
    assert test_paths == on_disk_test
    kaggle_val = table.filter(pl.col("path").str.contains("/chest_xray/val/"))
    assert kaggle_val.height == 4 and set(kaggle_val["split"]) <= {"train", "val"}
    # pool = train (16, 44) + Kaggle val (2, 2); our val = 20% of it per class
    counts = {row["split"]: row for row in manifest.counts().iter_rows(named=True)}
    assert (counts["val"]["NORMAL"], counts["val"]["PNEUMONIA"]) == (round(18 * 0.2), round(46 * 0.2))
    assert (counts["test"]["NORMAL"], counts["test"]["PNEUMONIA"]) == (12, 20)


def test_idrid_labels_come_from_the_csvs(synthetic_roots, tmp_path):
    manifest = load_manifest("idrid", synthetic_roots["idrid"], tmp_path)
    truths = synthetic_roots["idrid"] / "B. Disease Grading" / "2. Groundtruths"
    grades = {}
    for csv_name, folder in (("a. IDRiD_Disease Grading_Training Labels.csv", "a. Training Set"),
                             ("b. IDRiD_Disease Grading_Testing Labels.csv", "b. Testing Set")):
        for line in (truths / csv_name).read_text().splitlines()[1:]:
            name, grade, _ = line.split(",")
            grades[f"{folder}/{name}.jpg"] = int(grade)
    for path, label, split in manifest.table.select("path", "label", "split").iter_rows():
        key = "/".join(Path(path).parts[-2:])
        assert grades[key] == label
        assert (split == "test") == key.startswith("b. Testing Set")
    assert manifest.table.filter(pl.col("split") == "test").height == sum(DEFAULT_COUNTS["idrid"]["test"])


def test_isic_official_val_and_test_are_kept(synthetic_roots, tmp_path):
    manifest = load_manifest("isic2018", synthetic_roots["isic2018"], tmp_path, val_fraction=0.5)
    counts = manifest.counts()
    for split in ("train", "val", "test"):
        row = counts.filter(pl.col("split") == split).row(0)[1:-1]
        assert row == DEFAULT_COUNTS["isic2018"][split]  # val_fraction is ignored: official val
    val_paths = manifest.paths("val")
    assert all("ISIC2018_Task3_Validation_Input" in p for p in val_paths)
    assert min(min(DEFAULT_COUNTS["isic2018"][s]) for s in ("val", "test")) >= 2
    assert min(DEFAULT_COUNTS["isic2018"]["train"]) >= 4


def test_nlm_files_directly_in_root_and_publisher_extras_ignored(copy_of, tmp_path):
    root = copy_of("montgomery")
    manifest = load_manifest("montgomery", root, tmp_path / "a")
    assert not any("ManualMask" in p for p in manifest.table["path"])  # its PNGs are masks
    flat = tmp_path / "flat"
    (root / "CXR_png").rename(flat)
    flat_manifest = load_manifest("montgomery", flat, tmp_path / "b")
    assert flat_manifest.table.height == manifest.table.height
    assert not flat_manifest.is_synthetic  # the marker stayed in the original folder


def test_idrid_root_may_be_the_disease_grading_folder(synthetic_roots, tmp_path):
    parent = load_manifest("idrid", synthetic_roots["idrid"], tmp_path)
    inner = load_manifest("idrid", synthetic_roots["idrid"] / "B. Disease Grading", tmp_path)
    assert inner.table["label"].to_list() == parent.table["label"].to_list()
    assert inner.split_file != parent.split_file  # a different root gets its own split file


def test_guangzhou_without_top_folder(copy_of, tmp_path):
    root = copy_of("guangzhou")
    manifest = load_manifest("guangzhou", root / "chest_xray", tmp_path)
    assert manifest.table.height == sum(sum(c) for c in DEFAULT_COUNTS["guangzhou"].values())


def test_fingerprint_changes_with_file_label_or_split(copy_of, tmp_path):
    root = copy_of("isic2018")
    first = load_manifest("isic2018", root, tmp_path / "s")
    again = load_manifest("isic2018", root, tmp_path / "s")
    assert first.fingerprint == again.fingerprint
    image = Path(first.paths("train")[0])
    image.write_bytes(image.read_bytes() + b"\0")  # same name, new content
    assert load_manifest("isic2018", root, tmp_path / "s").fingerprint != first.fingerprint
    other_split = load_manifest("idrid", copy_of("idrid"), tmp_path / "s", split_seed=1)
    assert other_split.fingerprint != load_manifest("idrid", other_split.root, tmp_path / "s").fingerprint


def test_unknown_split_name_is_rejected(synthetic_roots, tmp_path):
    from medguna.errors import ConfigError

    manifest = load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path)
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        manifest.paths("validation")
