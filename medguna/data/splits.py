"""Stratified train/val/test splits, written once to a CSV split file and reused ever after."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

from medguna.atomic import write_text_atomic
from medguna.data.datasets import DatasetSpec
from medguna.data.layouts import ImageRecord
from medguna.data.rebuilds import note_rebuild
from medguna.errors import ConfigError, DataError

SPLIT_COLUMNS = ("path", "label", "split")
SPLITS = ("train", "val", "test")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")


def root_hash(root: Path) -> str:
    """Short hash of the root's absolute path: two copies of a dataset get separate split files."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


def split_file_path(
    split_dir: Path, spec: DatasetSpec, root: Path, val_fraction: float, test_fraction: float,
    split_seed: int,
) -> Path:
    """`<dataset>_<roothash>_seed<seed>_val<f>[_test<f>].csv` (test only where it is carved)."""
    name = f"{spec.name}_{root_hash(root)}_seed{split_seed}_val{val_fraction:g}"
    if not spec.has_official_test:
        name += f"_test{test_fraction:g}"
    return Path(split_dir) / f"{name}.csv"


def _shuffle_key(salt: str, seed: int, relative_path: str) -> str:
    # A hash order is the same on every platform and library version, unlike a seeded RNG shuffle.
    return hashlib.sha256(f"{salt}:{seed}:{relative_path}".encode()).hexdigest()


def _holdout_count(n: int, fraction: float) -> int:
    """Images of one class to hold out: rounded share, at least 1 and leaving at least 1 behind."""
    if fraction <= 0.0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def _stratified_holdout(
    paths_by_label: dict[int, list[str]], fraction: float, seed: int, salt: str
) -> set[str]:
    held: set[str] = set()
    for label in sorted(paths_by_label):
        ordered = sorted(paths_by_label[label], key=lambda p: _shuffle_key(salt, seed, p))
        held.update(ordered[: _holdout_count(len(ordered), fraction)])
    return held


def make_splits(
    spec: DatasetSpec, records: Sequence[ImageRecord], val_fraction: float, test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Map relative path -> split: official test/val kept, the rest carved stratified by class."""
    assignment = {r.relative_path: r.official_split for r in records}
    if not spec.has_official_test:
        pool: dict[int, list[str]] = {}
        for record in records:
            pool.setdefault(record.label, []).append(record.relative_path)
        for path in _stratified_holdout(pool, test_fraction, seed, "test"):
            assignment[path] = "test"
    if spec.name != "isic2018":  # ISIC's official validation set is our val split
        pool = {}
        for record in records:
            if assignment[record.relative_path] == "train":
                pool.setdefault(record.label, []).append(record.relative_path)
        for path in _stratified_holdout(pool, val_fraction, seed, "val"):
            assignment[path] = "val"
    return assignment


def _render(rows: list[tuple[str, int, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SPLIT_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


class DamagedSplitFile(DataError):
    """A split file whose bytes are not a CSV text (a torn write, a flipped byte): rebuilt."""


def write_split_file(path: Path, records: Sequence[ImageRecord], assignment: dict[str, str]) -> None:
    rows = [(r.relative_path, r.label, assignment[r.relative_path]) for r in records]
    write_text_atomic(path, _render(sorted(rows)))


def read_split_file(path: Path) -> dict[str, tuple[int, str]]:
    """relative path -> (label, split) from an existing split file; malformed files raise DataError,
    damaged ones (not UTF-8 CSV text) DamagedSplitFile."""
    regenerate = f"delete {path} to regenerate it"
    try:
        text = path.read_bytes().decode("utf-8")
        if "\0" in text:
            raise ValueError("a NUL byte")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, ValueError, csv.Error) as error:
        raise DamagedSplitFile(f"split file {path} is damaged ({type(error).__name__}: {error}); "
                               f"{regenerate}") from None
    if not rows or tuple(rows[0]) != SPLIT_COLUMNS:
        raise DataError(f"split file {path} does not start with header {','.join(SPLIT_COLUMNS)}; {regenerate}")
    table: dict[str, tuple[int, str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 3 or not row[1].isdigit() or row[2] not in SPLITS:
            raise DataError(f"split file {path} line {number} is malformed: {row}; {regenerate}")
        table[row[0]] = (int(row[1]), row[2])
    return table


def _listing(paths: list[str]) -> str:
    return ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def check_split_file(
    path: Path, spec: DatasetSpec, records: Sequence[ImageRecord], stored: dict[str, tuple[int, str]]
) -> dict[str, str]:
    """Check a stored split against the images on disk; return relative path -> split."""
    regenerate = f"delete {path} to regenerate it (the new split will differ)"
    on_disk = {r.relative_path: r for r in records}
    gone = sorted(set(stored) - set(on_disk))
    if gone:
        raise DataError(
            f"split file {path} names {len(gone)} image(s) that are gone from the dataset: "
            f"{_listing(gone)}; restore them or {regenerate}"
        )
    new = sorted(set(on_disk) - set(stored))
    if new:
        raise DataError(
            f"split file {path} misses {len(new)} image(s) now in the dataset: {_listing(new)}; "
            f"remove them or {regenerate}"
        )
    relabelled = sorted(p for p, r in on_disk.items() if stored[p][0] != r.label)
    if relabelled:
        raise DataError(
            f"split file {path} gives other labels than the dataset for {_listing(relabelled)}; {regenerate}"
        )
    official = [r for r in records if r.official_split != "train"]
    moved = sorted(r.relative_path for r in official if stored[r.relative_path][1] != r.official_split)
    if spec.has_official_test and moved:
        raise DataError(
            f"split file {path} moves official {spec.name} test/val images to other splits: "
            f"{_listing(moved)}; {regenerate}"
        )
    return {p: split for p, (_, split) in stored.items()}


def load_or_create_splits(
    path: Path, spec: DatasetSpec, records: Sequence[ImageRecord], val_fraction: float,
    test_fraction: float, seed: int,
) -> dict[str, str]:
    """The stored split if `path` exists (checked against disk), else a new one written there."""
    assignment = make_splits(spec, records, val_fraction, test_fraction, seed)
    if path.is_file():
        try:
            table = read_split_file(path)
        except DamagedSplitFile as damaged:
            # The split is a function of the images, the seed and the fractions: rebuilt, it is the same.
            note_rebuild(path.parent, f"{str(damaged).split(';')[0]}: rebuilding it from the images, "
                                      f"split_seed={seed} and the fractions (the same split)")
            write_split_file(path, records, assignment)
            return assignment
        stored = check_split_file(path, spec, records, table)
        _check_same_split(path, stored, assignment, seed)
        return stored
    write_split_file(path, records, assignment)
    return assignment


def _check_same_split(path: Path, stored: dict[str, str], expected: dict[str, str], seed: int) -> None:
    """The split is a function of the images, the seed and the fractions (all in the file's name):
    a stored file that says otherwise was edited (val and test rows swapped, say), and trials
    would select their epoch on test images."""
    moved = sorted(p for p, split in stored.items() if split != expected[p])
    if moved:
        examples = ", ".join(f"{p} ({stored[p]}, expected {expected[p]})" for p in moved[:3])
        raise DataError(
            f"split file {path} puts {len(moved)} image(s) in other splits than split_seed={seed} "
            f"and its fractions give: {examples}{' ...' if len(moved) > 3 else ''}; the file was "
            f"edited or copied from elsewhere: delete {path} to regenerate it"
        )
