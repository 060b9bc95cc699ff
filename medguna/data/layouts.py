"""Parsers for the official folder layouts of the five datasets (docs/method.md §6).

Each parser takes the folder the user named and returns one `ImageRecord` per image, with its path
relative to that folder, its label (index into the DatasetSpec's classes) and the official split it
came from: "train" (the pool our validation split is carved from), "val" (only ISIC's official
validation set) or "test" (an official test set).
"""

from __future__ import annotations

import csv
import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medguna.data.datasets import DatasetSpec, get_dataset
from medguna.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageRecord:
    relative_path: str  # POSIX path relative to the root the user named
    label: int
    official_split: str  # "train" | "val" | "test"


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_image(path: Path) -> bool:
    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
        return False
    _check_link(path)
    return path.is_file()


def _check_link(path: Path) -> None:
    """A dangling or looping symlink reads as "not a file": refuse it instead of dropping an image."""
    if not path.is_symlink():
        return
    try:
        os.stat(path)
    except OSError as error:
        what = "a symlink loop" if error.errno == errno.ELOOP else f"a broken symlink (to {os.readlink(path)})"
        raise DataError(f"image {path} is {what}: point the link at the image file or remove it") from None


# --- shenzhen / montgomery -------------------------------------------------------------------

def _nlm_parser(prefix: str) -> Callable[[Path], list[ImageRecord]]:
    """Parser for the NLM TB sets: `<prefix>_####_<label>.png`, maybe inside CXR_png/."""
    pattern = re.compile(rf"^{prefix}_(\d+)_(\d)\.png$", re.IGNORECASE)

    def parse(root: Path) -> list[ImageRecord]:
        for folder in (root, root / "CXR_png"):
            if not folder.is_dir():
                continue
            candidates = [p for p in folder.iterdir() if p.name.upper().startswith(prefix)]
            for path in candidates:
                _check_link(path)
            named = sorted(p for p in candidates if p.is_file())
            if not named:
                continue
            records = []
            for path in named:
                match = pattern.match(path.name)
                if match is None or match.group(2) not in ("0", "1"):
                    if path.suffix.lower() != ".png":
                        continue  # e.g. a stray .txt reading next to the images
                    raise DataError(
                        f"cannot read a label from {path}: expected {prefix}_####_0.png (NORMAL) "
                        f"or {prefix}_####_1.png (TB); rename or remove the file"
                    )
                records.append(ImageRecord(_relative(path, root), int(match.group(2)), "train"))
            if records:
                return records
        raise DataError(
            f"no {prefix}_####_#.png images under {root}: expected the NLM layout, for example "
            f"{root / 'CXR_png' / (prefix + '_0001_0.png')} or {root / (prefix + '_0001_1.png')}"
        )

    return parse


# --- guangzhou -------------------------------------------------------------------------------

def _parse_guangzhou(root: Path) -> list[ImageRecord]:
    """Kermany layout: [chest_xray/]{train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg; val joins train."""
    spec = get_dataset("guangzhou")
    candidates = (root, root / "chest_xray", root / "chest_xray" / "chest_xray")
    base = next((c for c in candidates if (c / "train").is_dir() and (c / "test").is_dir()), None)
    if base is None:
        raise DataError(
            f"no guangzhou layout under {root}: expected train/ and test/ folders with NORMAL/ and "
            f"PNEUMONIA/ inside, for example {root / 'chest_xray' / 'train' / 'NORMAL' / 'IM-0115-0001.jpeg'}"
        )
    records = []
    for folder, official_split in (("train", "train"), ("val", "train"), ("test", "test")):
        split_dir = base / folder
        if not split_dir.is_dir():
            continue  # the original Mendeley copy has no val/
        unknown = sorted(
            p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in spec.classes
        )
        if unknown:
            raise DataError(
                f"unexpected class folder(s) {unknown} in {split_dir}: guangzhou expects only "
                f"{', '.join(spec.classes)}"
            )
        for label, class_name in enumerate(spec.classes):
            class_dir = split_dir / class_name
            if not class_dir.is_dir():
                continue
            for path in sorted(class_dir.iterdir()):
                if _is_image(path):
                    records.append(ImageRecord(_relative(path, root), label, official_split))
    return records


# --- idrid -----------------------------------------------------------------------------------

IDRID_IMAGES = "1. Original Images"
IDRID_TRUTHS = "2. Groundtruths"
IDRID_SETS = (
    ("a. Training Set", "a. IDRiD_Disease Grading_Training Labels.csv", "train"),
    ("b. Testing Set", "b. IDRiD_Disease Grading_Testing Labels.csv", "test"),
)
IDRID_COLUMNS = ("Image name", "Retinopathy grade", "Risk of macular edema")


def _read_csv_rows(csv_path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (whitespace-stripped) and non-blank rows of a CSV, tolerating a UTF-8 BOM."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read label file {csv_path}: {error}") from None
    if not rows:
        raise DataError(f"label file {csv_path} is empty; restore it from the official download")
    header = [name.strip() for name in rows[0]]
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    return header, body


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in (".jpg", ".JPG", ".jpeg", ".png", ".tif"):
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None


def _missing_error(csv_path: Path, folder: Path, missing: list[str]) -> DataError:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return DataError(
        f"label file {csv_path} names {len(missing)} image(s) missing from {folder}: {shown}; "
        "restore the images or use the label file that came with them"
    )


def _parse_idrid(root: Path) -> list[ImageRecord]:
    """IDRiD "B. Disease Grading": images in 1. Original Images/, grades in 2. Groundtruths/ CSVs."""
    num_grades = get_dataset("idrid").num_classes
    candidates = (root, root / "B. Disease Grading")
    base = next((c for c in candidates if (c / IDRID_IMAGES).is_dir() and (c / IDRID_TRUTHS).is_dir()), None)
    if base is None:
        raise DataError(
            f"no idrid layout under {root}: expected the 'B. Disease Grading' folder (or its parent), "
            f"for example {root / 'B. Disease Grading' / IDRID_IMAGES / 'a. Training Set' / 'IDRiD_001.jpg'}"
        )
    records = []
    for image_folder, csv_name, official_split in IDRID_SETS:
        folder = base / IDRID_IMAGES / image_folder
        csv_path = base / IDRID_TRUTHS / csv_name
        if not folder.is_dir():
            raise DataError(f"idrid image folder missing: {folder}")
        if not csv_path.is_file():
            raise DataError(f"idrid label file missing: {csv_path}")
        header, body = _read_csv_rows(csv_path)
        named = [name for name in header if name]  # the real CSVs carry trailing empty columns
        unknown = [name for name in named if name not in IDRID_COLUMNS]
        if unknown or IDRID_COLUMNS[0] not in named or IDRID_COLUMNS[1] not in named:
            raise DataError(
                f"label file {csv_path} has columns {named}; expected {list(IDRID_COLUMNS)} "
                f"(unknown: {unknown or 'none'})"
            )
        name_at, grade_at = header.index(IDRID_COLUMNS[0]), header.index(IDRID_COLUMNS[1])
        missing = []
        for row in body:
            stem = row[name_at].strip() if name_at < len(row) else ""
            if not stem:
                continue
            grade_text = row[grade_at].strip() if grade_at < len(row) else ""
            if not grade_text.isdigit() or int(grade_text) >= num_grades:
                raise DataError(
                    f"label file {csv_path}: image {stem} has retinopathy grade {grade_text!r}; "
                    f"expected an integer 0-{num_grades - 1}"
                )
            path = _find_image(folder, Path(stem).stem if Path(stem).suffix else stem)
            if path is None:
                missing.append(stem)
                continue
            records.append(ImageRecord(_relative(path, root), int(grade_text), official_split))
        if missing:
            raise _missing_error(csv_path, folder, missing)
    return records


# --- isic2018 --------------------------------------------------------------------------------

ISIC_SETS = (("Training", "train"), ("Validation", "val"), ("Test", "test"))


def _parse_isic2018(root: Path) -> list[ImageRecord]:
    """ISIC 2018 Task 3: *_Input/ISIC_#######.jpg folders and one-hot *_GroundTruth CSVs."""
    classes = get_dataset("isic2018").classes
    expected_header = ["image", *classes]
    if not (root / "ISIC2018_Task3_Training_Input").is_dir():
        raise DataError(
            f"no isic2018 layout under {root}: expected the Task 3 folders, for example "
            f"{root / 'ISIC2018_Task3_Training_Input' / 'ISIC_0024306.jpg'} and "
            f"{root / 'ISIC2018_Task3_Training_GroundTruth' / 'ISIC2018_Task3_Training_GroundTruth.csv'}"
        )
    records = []
    for part, official_split in ISIC_SETS:
        folder = root / f"ISIC2018_Task3_{part}_Input"
        csv_path = root / f"ISIC2018_Task3_{part}_GroundTruth" / f"ISIC2018_Task3_{part}_GroundTruth.csv"
        if not folder.is_dir():
            raise DataError(f"isic2018 image folder missing: {folder}")
        if not csv_path.is_file():
            raise DataError(f"isic2018 label file missing: {csv_path}")
        header, body = _read_csv_rows(csv_path)
        if header != expected_header:
            unknown = [name for name in header if name not in expected_header]
            raise DataError(
                f"label file {csv_path} has columns {header}; expected {expected_header} "
                f"(unknown: {unknown or 'none'})"
            )
        missing = []
        for row in body:
            try:
                values = [float(cell) for cell in row[1 : 1 + len(classes)]]
            except ValueError:
                values = []
            if len(values) != len(classes) or sorted(values) != [0.0] * (len(classes) - 1) + [1.0]:
                raise DataError(
                    f"label file {csv_path}: row {row} is not one-hot over {list(classes)}"
                )
            path = folder / (row[0].strip() + ".jpg")
            if not path.is_file():
                missing.append(row[0].strip())
                continue
            records.append(ImageRecord(_relative(path, root), values.index(1.0), official_split))
        if missing:
            raise _missing_error(csv_path, folder, missing)
    return records


PARSERS: dict[str, Callable[[Path], list[ImageRecord]]] = {
    "shenzhen": _nlm_parser("CHNCXR"),
    "montgomery": _nlm_parser("MCUCXR"),
    "guangzhou": _parse_guangzhou,
    "idrid": _parse_idrid,
    "isic2018": _parse_isic2018,
}


def _check_every_class_present(spec: DatasetSpec, root: Path, records: list[ImageRecord]) -> None:
    """Each class needs images in the training pool and, where one exists, in the official test set."""
    needed = ("train", "test") if spec.has_official_test else ("train",)
    for official_split in needed:
        present = {r.label for r in records if r.official_split == official_split}
        empty = [name for label, name in enumerate(spec.classes) if label not in present]
        if empty:
            raise DataError(
                f"{spec.name} under {root}: class(es) {empty} have no images in the official "
                f"{official_split} set; every class in {list(spec.classes)} needs at least one image"
            )


def parse_layout(dataset: str, root: str | Path) -> list[ImageRecord]:
    """Records of every image of `dataset` found under `root`, sorted by relative path."""
    spec = get_dataset(dataset)
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DataError(
            f"dataset root {root_path} does not exist or is not a folder; pass the folder that "
            f"holds the {spec.name} download ({spec.description})"
        )
    records = sorted(PARSERS[spec.name](root_path.resolve()), key=lambda r: r.relative_path)
    _check_every_class_present(spec, root_path, records)
    return records
