"""Each bad input named in the issue fails with one clear MedgunaError subclass and message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medguna.data.images import decode_image
from medguna.data.manifest import load_manifest
from medguna.errors import ConfigError, DataError

IDRID_TRUTHS = Path("B. Disease Grading") / "2. Groundtruths"
IDRID_TRAIN_CSV = IDRID_TRUTHS / "a. IDRiD_Disease Grading_Training Labels.csv"
ISIC_TRAIN_CSV = Path("ISIC2018_Task3_Training_GroundTruth") / "ISIC2018_Task3_Training_GroundTruth.csv"


def test_missing_root(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DataError, match="does not exist") as caught:
        load_manifest("guangzhou", missing, tmp_path / "splits")
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("shenzhen", "CXR_png/CHNCXR_0001_0.png"),
        ("montgomery", "CXR_png/MCUCXR_0001_0.png"),
        ("guangzhou", "chest_xray/train/NORMAL/IM-0115-0001.jpeg"),
        ("idrid", "B. Disease Grading/1. Original Images/a. Training Set/IDRiD_001.jpg"),
        ("isic2018", "ISIC2018_Task3_Training_Input/ISIC_0024306.jpg"),
    ],
)
def test_layout_matching_no_parser_names_an_example(name, example, tmp_path):
    root = tmp_path / "wrong"
    (root / "images").mkdir(parents=True)
    (root / "images" / "scan.png").write_bytes(b"not relevant")
    with pytest.raises(DataError, match=f"no {name} layout|no .*_####_#.png images") as caught:
        load_manifest(name, root, tmp_path / "splits")
    assert str(root / example) in str(caught.value)


def test_undecodable_image_names_the_file(tmp_path):
    broken = tmp_path / "CHNCXR_0001_0.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="cannot decode image") as caught:
        decode_image(broken, "L")
    assert str(broken) in str(caught.value)


def test_truncated_jpeg_names_the_file(synthetic_roots, tmp_path):
    source = next((synthetic_roots["isic2018"] / "ISIC2018_Task3_Test_Input").glob("*.jpg"))
    truncated = tmp_path / source.name
    truncated.write_bytes(source.read_bytes()[: len(source.read_bytes()) // 2])
    with pytest.raises(DataError, match=truncated.name):
        decode_image(truncated, "RGB")


def test_idrid_csv_with_unknown_columns(copy_of, tmp_path):
    root = copy_of("idrid")
    csv_path = root / IDRID_TRAIN_CSV
    lines = csv_path.read_text().splitlines()
    lines[0] = "Image,Grade,Risk of macular edema"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"has columns \['Image', 'Grade'") as caught:
        load_manifest("idrid", root, tmp_path / "splits")
    assert "unknown: ['Image', 'Grade']" in str(caught.value)


def test_idrid_header_whitespace_and_blank_rows_are_tolerated(copy_of, tmp_path):
    root = copy_of("idrid")
    csv_path = root / IDRID_TRAIN_CSV
    lines = csv_path.read_text().splitlines()
    lines[0] = " Image name , Retinopathy grade,Risk of macular edema ,,"  # trailing empty columns too
    csv_path.write_text("\n".join([*lines, ",,", ""]) + "\n")
    assert load_manifest("idrid", root, tmp_path / "splits").table.height == 104


def test_isic_csv_with_unknown_columns(copy_of, tmp_path):
    root = copy_of("isic2018")
    csv_path = root / ISIC_TRAIN_CSV
    text = csv_path.read_text()
    csv_path.write_text(text.replace("image,MEL,NV", "image,MELANOMA,NV", 1))
    with pytest.raises(DataError, match=r"unknown: \['MELANOMA'\]"):
        load_manifest("isic2018", root, tmp_path / "splits")


@pytest.mark.parametrize(("name", "csv_relative"), [("idrid", IDRID_TRAIN_CSV), ("isic2018", ISIC_TRAIN_CSV)])
def test_label_csv_naming_images_missing_on_disk(name, csv_relative, copy_of, tmp_path):
    root = copy_of(name)
    first_row = (root / csv_relative).read_text().splitlines()[1]
    image_name = first_row.split(",")[0]
    victim = next(root.rglob(f"{image_name}.jpg"))
    victim.unlink()
    with pytest.raises(DataError, match=f"names 1 image\\(s\\) missing from .*: {image_name}"):
        load_manifest(name, root, tmp_path / "splits")


def test_isic_row_that_is_not_one_hot(copy_of, tmp_path):
    root = copy_of("isic2018")
    csv_path = root / ISIC_TRAIN_CSV
    lines = csv_path.read_text().splitlines()
    name = lines[1].split(",")[0]
    lines[1] = f"{name},1.0,1.0,0.0,0.0,0.0,0.0,0.0"  # two diagnoses in one row
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{name}.*is not one-hot"):
        load_manifest("isic2018", root, tmp_path / "splits")


def test_empty_class(copy_of, tmp_path):
    root = copy_of("guangzhou")
    for image in (root / "chest_xray" / "test" / "PNEUMONIA").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"class\(es\) \['PNEUMONIA'\] have no images in the official test set"):
        load_manifest("guangzhou", root, tmp_path / "splits")


def test_empty_class_in_nlm_set(copy_of, tmp_path):
    root = copy_of("shenzhen")
    for image in (root / "CXR_png").glob("*_1.png"):
        image.unlink()
    with pytest.raises(DataError, match=r"\['TB'\] have no images"):
        load_manifest("shenzhen", root, tmp_path / "splits")


def test_nlm_file_with_unreadable_label(copy_of, tmp_path):
    root = copy_of("shenzhen")
    shutil.copy(root / "CXR_png" / "CHNCXR_0001_0.png", root / "CXR_png" / "CHNCXR_0999_7.png")
    with pytest.raises(DataError, match="CHNCXR_0999_7.png.*rename or remove"):
        load_manifest("shenzhen", root, tmp_path / "splits")


def test_unexpected_class_folder(copy_of, tmp_path):
    root = copy_of("guangzhou")
    (root / "chest_xray" / "train" / "COVID").mkdir()
    with pytest.raises(DataError, match=r"unexpected class folder\(s\) \['COVID'\]"):
        load_manifest("guangzhou", root, tmp_path / "splits")


def test_unknown_dataset_and_bad_fractions(synthetic_roots, tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'chexpert'"):
        load_manifest("chexpert", synthetic_roots["shenzhen"], tmp_path)
    with pytest.raises(ConfigError, match="val_fraction must be in"):
        load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path, val_fraction=1.5)
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        load_manifest("shenzhen", synthetic_roots["shenzhen"], tmp_path, test_fraction=0.0)
