"""The manifest of one dataset: every image with its label and split, plus a content fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from medguna.data.datasets import DatasetSpec, get_dataset
from medguna.data.layouts import parse_layout
from medguna.data.splits import (
    SPLITS,
    check_fractions,
    load_or_create_splits,
    split_file_path,
)
from medguna.errors import ConfigError, DataError
from medguna.json_records import read_json_record

SYNTHETIC_MARKER = "MEDGUNA_SYNTHETIC.json"


@dataclass(frozen=True)
class Manifest:
    spec: DatasetSpec
    table: pl.DataFrame  # path (absolute str), label (int), class_name, split; sorted by path
    root: Path
    is_synthetic: bool
    split_file: Path
    fingerprint: str

    def _rows(self, split: str) -> pl.DataFrame:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return self.table.filter(pl.col("split") == split)

    def paths(self, split: str) -> list[str]:
        """Absolute image paths of `split`, in the table's (path-sorted) order."""
        return self._rows(split)["path"].to_list()

    def labels(self, split: str) -> torch.LongTensor:
        """Labels of `split`, aligned with `paths(split)`."""
        return torch.tensor(self._rows(split)["label"].to_list(), dtype=torch.long)

    def counts(self) -> pl.DataFrame:
        """Images per split (rows train/val/test) and class (one column per class, label order)."""
        columns: dict[str, list] = {"split": list(SPLITS)}
        for label, class_name in enumerate(self.spec.classes):
            columns[class_name] = [
                self.table.filter((pl.col("split") == s) & (pl.col("label") == label)).height
                for s in SPLITS
            ]
        frame = pl.DataFrame(columns)
        return frame.with_columns(total=pl.sum_horizontal(list(self.spec.classes)))

    @property
    def synthetic_info(self) -> dict | None:
        """The synthesiser's marker contents, or None for a real dataset."""
        return read_synthetic_marker(self.root)


def read_synthetic_marker(root: str | Path) -> dict | None:
    """The synthesiser's marker in `root`, or None for a real dataset; DataError where it is unreadable."""
    marker = Path(root).expanduser() / SYNTHETIC_MARKER
    if not marker.is_file():
        return None
    return read_json_record(marker, f"it is the marker medguna synth writes, so the stand-in in "
                            f"{Path(root).expanduser()} cannot be trusted; write it again with medguna synth "
                            "into a new folder (or, for the stand-in under storage.cache_dir/synthetic, "
                            "delete that folder)", error=DataError)


def missing_classes(manifest: Manifest) -> dict[str, list[str]]:
    """split -> the dataset's classes it has no image of (only the splits that lack one)."""
    missing = {}
    for row in manifest.counts().iter_rows(named=True):
        absent = [name for name in manifest.spec.classes if row[name] == 0]
        if absent:
            missing[row["split"]] = absent
    return missing


def is_synthetic_root(root: str | Path) -> bool:
    """A folder medguna's synthesiser wrote (its marker file is there), wherever it was passed from."""
    return (Path(root).expanduser() / SYNTHETIC_MARKER).is_file()


def manifest_fingerprint(root: Path, rows: list[tuple[str, int, str]]) -> str:
    """sha256 over sorted (relative path, size, mtime_ns, label, split): any file/label/split change shows."""
    digest = hashlib.sha256()
    for relative_path, label, split in sorted(rows):
        try:
            stat = (root / relative_path).stat()
        except FileNotFoundError:
            raise DataError(f"image {root / relative_path} disappeared while the dataset was being read: "
                            "wait until whatever moves or deletes files under the root is done, then "
                            "run again") from None
        digest.update(f"{relative_path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{label}\t{split}\n".encode())
    return digest.hexdigest()


def _check_no_empty_split(dataset: str, root: Path, rows: list[tuple[str, int, str]], split_file: Path) -> None:
    # Trials train, select and test on all three: an empty one fails later as a shape error.
    counts = {split: sum(1 for _, _, s in rows if s == split) for split in ("train", "val", "test")}
    empty = [split for split, count in counts.items() if count == 0]
    if empty:
        raise DataError(
            f"{dataset} at {root} has no images in its {' and '.join(empty)} split(s) "
            f"(train {counts['train']}, val {counts['val']}, test {counts['test']}; split file "
            f"{split_file}): restore the official test folder or add images, or raise "
            "data.val_fraction / data.test_fraction"
        )


def load_manifest(
    dataset: str,
    root: str | Path,
    split_dir: str | Path,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Manifest:
    """Parse `dataset`'s official layout under `root` and attach the (stored or new) split.

    The split is read from `split_dir` when a split file for this root, seed and fractions exists,
    so every run and process sees the same split; otherwise it is made and written there.
    """
    spec = get_dataset(dataset)
    check_fractions(val_fraction, test_fraction)
    records = parse_layout(spec.name, root)
    root_path = Path(root).expanduser().resolve()
    split_file = split_file_path(Path(split_dir), spec, root_path, val_fraction, test_fraction, split_seed)
    assignment = load_or_create_splits(split_file, spec, records, val_fraction, test_fraction, split_seed)
    rows = [(r.relative_path, r.label, assignment[r.relative_path]) for r in records]
    _check_no_empty_split(spec.name, root_path, rows, split_file)
    table = pl.DataFrame(
        {
            "path": [str(root_path / p) for p, _, _ in rows],
            "label": [label for _, label, _ in rows],
            "class_name": [spec.classes[label] for _, label, _ in rows],
            "split": [split for _, _, split in rows],
        },
        schema={"path": pl.String, "label": pl.Int64, "class_name": pl.String, "split": pl.String},
    )
    return Manifest(
        spec=spec,
        table=table,
        root=root_path,
        is_synthetic=is_synthetic_root(root_path),
        split_file=split_file,
        fingerprint=manifest_fingerprint(root_path, rows),
    )
