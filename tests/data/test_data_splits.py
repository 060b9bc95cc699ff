"""Split files: written once, reused byte for byte across runs and processes, checked against disk."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medguna.data.manifest import load_manifest
from medguna.errors import DataError


def test_split_file_is_reused_unchanged(synthetic_roots, tmp_path):
    first = load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path)
    content = first.split_file.read_bytes()
    mtime = first.split_file.stat().st_mtime_ns
    second = load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path)
    assert second.split_file == first.split_file
    assert second.split_file.read_bytes() == content and second.split_file.stat().st_mtime_ns == mtime
    assert second.table.equals(first.table)
    header, *rows = content.decode().splitlines()
    assert header == "path,label,split"
    assert rows[0].startswith("CXR_png/CHNCXR_0001_0.png,0,")
    assert len(rows) == 82


def test_split_file_name_carries_dataset_root_hash_seed_and_fractions(synthetic_roots, tmp_path):
    manifest = load_manifest("montgomery", synthetic_roots["montgomery"], tmp_path, val_fraction=0.1,
                             test_fraction=0.3, split_seed=5)
    name = manifest.split_file.name
    assert name.startswith("montgomery_") and name.endswith("_seed5_val0.1_test0.3.csv")
    assert len(name.split("_")[1]) == 10


def test_same_split_in_a_fresh_process_even_without_the_file(synthetic_roots, tmp_path):
    """Regenerating from the seed in another process gives the same bytes; so does reusing it."""
    here = load_manifest("idrid", synthetic_roots["idrid"], tmp_path / "here")
    script = textwrap.dedent(f"""
        from medguna.data.manifest import load_manifest
        m = load_manifest("idrid", {str(synthetic_roots["idrid"])!r}, {str(tmp_path / "there")!r})
        print(m.split_file)
        again = load_manifest("idrid", {str(synthetic_roots["idrid"])!r}, {str(tmp_path / "here")!r})
        print(again.fingerprint)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    there_file, fingerprint = result.stdout.split()
    assert Path(there_file).read_bytes() == here.split_file.read_bytes()
    assert fingerprint == here.fingerprint


def test_other_seed_gives_other_split(synthetic_roots, tmp_path):
    a = load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path, split_seed=0)
    b = load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path, split_seed=1)
    assert a.split_file != b.split_file
    assert a.paths("test") != b.paths("test")
    assert a.counts().equals(b.counts())  # stratified: same sizes per class


def test_gone_image_is_reported_with_how_to_regenerate(copy_of, tmp_path):
    root = copy_of("shenzhen")
    manifest = load_manifest("shenzhen", root, tmp_path)
    (root / "CXR_png" / "CHNCXR_0005_0.png").unlink()
    with pytest.raises(DataError, match="gone from the dataset: CXR_png/CHNCXR_0005_0.png") as caught:
        load_manifest("shenzhen", root, tmp_path)
    assert f"delete {manifest.split_file} to regenerate" in str(caught.value)


def test_new_image_is_reported(copy_of, tmp_path):
    root = copy_of("isic2018")
    load_manifest("isic2018", root, tmp_path)
    folder = root / "ISIC2018_Task3_Training_Input"
    source = next(folder.glob("*.jpg"))
    (folder / "ISIC_9999999.jpg").write_bytes(source.read_bytes())
    csv_path = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    with open(csv_path, "a") as handle:
        handle.write("ISIC_9999999,0.0,1.0,0.0,0.0,0.0,0.0,0.0\r\n")
    with pytest.raises(DataError, match="misses 1 image.*ISIC_9999999.jpg.*regenerate"):
        load_manifest("isic2018", root, tmp_path)


def test_changed_label_is_reported(copy_of, tmp_path):
    root = copy_of("idrid")
    load_manifest("idrid", root, tmp_path)
    csv_path = root / "B. Disease Grading" / "2. Groundtruths" / "a. IDRiD_Disease Grading_Training Labels.csv"
    lines = csv_path.read_text().splitlines()
    name, grade, edema = lines[1].split(",")
    lines[1] = f"{name},{(int(grade) + 1) % 5},{edema}"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"other labels than the dataset for .*{name}.jpg"):
        load_manifest("idrid", root, tmp_path)


def test_malformed_split_file(synthetic_roots, tmp_path):
    manifest = load_manifest("guangzhou", synthetic_roots["guangzhou"], tmp_path)
    manifest.split_file.write_text("path,label,split\nchest_xray/test/NORMAL/x.jpeg,0,holdout\n")
    with pytest.raises(DataError, match="line 2 is malformed.*delete .* to regenerate"):
        load_manifest("guangzhou", synthetic_roots["guangzhou"], tmp_path)
