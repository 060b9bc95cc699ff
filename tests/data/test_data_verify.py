"""Data checks that name every problem: unreadable images (all of them), symlinks that lead
nowhere, a split file whose rows were edited, an empty split."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medguna.cli import main
from medguna.data.cache import build_image_cache
from medguna.data.manifest import load_manifest
from medguna.data.synthetic import synthesize
from medguna.errors import DataError


@pytest.fixture
def small_montgomery(tmp_path) -> Path:
    return synthesize("montgomery", tmp_path / "MontgomerySet", seed=0, scale=0.3, image_size=64)


def _break_two(root: Path) -> list[Path]:
    images = sorted((root / "CXR_png").glob("MCUCXR_*.png"))
    truncated, not_an_image = images[1], images[4]
    truncated.write_bytes(truncated.read_bytes()[:200])
    not_an_image.write_bytes(b"this is a text file, saved with a .png name")
    return [truncated, not_an_image]


def test_data_verify_lists_every_unreadable_image_with_the_fix(small_montgomery, tmp_path, capsys):
    root = small_montgomery
    args = ["data", "montgomery", "--root", str(root), "--split-dir", str(tmp_path / "splits"), "--verify"]
    assert main(args) == 0
    assert "verified: all" in capsys.readouterr().out
    bad = _break_two(root)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 image(s) cannot be read" in err and "replace or delete" in err
    for path in bad:
        assert f"cannot decode image {path}" in err


def test_the_image_cache_build_names_every_bad_file_at_once(small_montgomery, tmp_path):
    root = small_montgomery
    bad = _break_two(root)
    paths = sorted(str(p) for p in (root / "CXR_png").glob("MCUCXR_*.png"))
    with pytest.raises(DataError, match=r"2 image\(s\) cannot be read") as caught:
        build_image_cache(paths, "medclip", 16, tmp_path / "cache", progress=False)
    assert all(str(path) in str(caught.value) for path in bad)


def test_a_symlink_loop_or_broken_link_is_reported_not_dropped(small_montgomery, tmp_path):
    root = synthesize("guangzhou", tmp_path / "chest_xray", seed=0, scale=0.2, image_size=64)
    folder = next(root.rglob("NORMAL"))
    loop = folder / "loop.jpeg"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=f"image {loop} is a symlink loop"):
        load_manifest("guangzhou", root, tmp_path / "splits")
    loop.unlink()
    nlm = small_montgomery
    dangling = nlm / "CXR_png" / "MCUCXR_9999_1.png"
    dangling.symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"is a broken symlink \(to .*gone.png\)"):
        load_manifest("montgomery", nlm, tmp_path / "splits")


def test_a_split_file_with_val_and_test_rows_swapped_is_refused(small_montgomery, tmp_path):
    manifest = load_manifest("montgomery", small_montgomery, tmp_path / "splits",
                             val_fraction=0.2, test_fraction=0.2)
    text = manifest.split_file.read_text()
    swapped = text.replace(",val\n", ",tmp\n").replace(",test\n", ",val\n").replace(",tmp\n", ",test\n")
    assert swapped != text
    manifest.split_file.write_text(swapped)
    with pytest.raises(DataError, match=r"puts \d+ image\(s\) in other splits than split_seed=0") as caught:
        load_manifest("montgomery", small_montgomery, tmp_path / "splits",
                      val_fraction=0.2, test_fraction=0.2)
    assert f"delete {manifest.split_file} to regenerate" in str(caught.value)


def test_a_dataset_too_small_for_a_test_split_is_a_clear_error(small_montgomery, tmp_path):
    # One image per class: nothing can be held out for validation or test (a shape error later).
    keep = {"MCUCXR_0001_0.png"}
    images = sorted((small_montgomery / "CXR_png").glob("MCUCXR_*.png"))
    keep.add(next(p.name for p in images if p.name.endswith("_1.png")))
    for image in images:
        if image.name not in keep:
            os.remove(image)
    with pytest.raises(DataError, match=r"no images in its val and test split\(s\) \(train 2, val 0, test 0"):
        load_manifest("montgomery", small_montgomery, tmp_path / "splits")


def test_an_image_vanishing_while_the_dataset_is_read_is_named(small_montgomery):
    from medguna.data.manifest import manifest_fingerprint

    rows = [("CXR_png/MCUCXR_0001_0.png", 0, "train"), ("CXR_png/MCUCXR_0999_0.png", 0, "test")]
    with pytest.raises(DataError, match=r"image .*MCUCXR_0999_0.png disappeared while the dataset was being read"):
        manifest_fingerprint(small_montgomery, rows)
