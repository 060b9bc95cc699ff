"""Synthetic stand-ins for the five datasets, written in exactly the publishers' layouts.

They let tests, CI and dry runs exercise every parser, split, cache and trial path without the
real (licensed, multi-gigabyte) downloads. Images are small, seeded, deterministic and carry
class-dependent structure; the counts keep each real set's class imbalance.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from medguna.atomic import write_json_atomic
from medguna.data.datasets import DATASETS, get_dataset
from medguna.data.layouts import IDRID_IMAGES, IDRID_SETS, IDRID_TRUTHS
from medguna.data.manifest import SYNTHETIC_MARKER
from medguna.data.shifts import NO_SHIFT, apply_shifts, canonical_shift, parse_shift
from medguna.data.synth_draw import draw_chest, draw_fundus, draw_skin
from medguna.errors import ConfigError, DataError

# Images per official split and class (label order) at scale 1.0. Ratios follow the real sets:
# Shenzhen 326/336, Montgomery 80/58, Guangzhou train 1341/3875 + test 234/390 (+ Kaggle val 8/8),
# IDRiD train 134/20/136/74/49 + test 34/5/32/19/10, ISIC 2018 train/val/test (rare classes raised
# so each has >= 4 train, 2 val and 2 test images). Guangzhou's normal training films are raised
# from 16 to 18 so that at the demonstration's scale (5) its validation split holds >= 20 normal
# films (docs/demonstration.md, rule (c)).
DEFAULT_COUNTS: dict[str, dict[str, tuple[int, ...]]] = {
    "shenzhen": {"train": (40, 42)},
    "montgomery": {"train": (44, 32)},
    "guangzhou": {"train": (18, 44), "val": (2, 2), "test": (12, 20)},
    "idrid": {"train": (24, 8, 24, 14, 10), "test": (7, 3, 7, 4, 3)},
    "isic2018": {
        "train": (8, 40, 5, 4, 8, 4, 4),
        "val": (3, 8, 2, 2, 3, 2, 2),
        "test": (6, 20, 4, 2, 6, 2, 3),
    },
}
# Default (width, height) per dataset, a few hundred times smaller than the real images.
DEFAULT_SHAPES = {
    "shenzhen": (128, 128),
    "montgomery": (104, 128),
    "guangzhou": (128, 96),
    "idrid": (144, 96),
    "isic2018": (128, 96),
}
MIN_SIDE, MAX_SIDE = 32, 1024


def scaled_counts(dataset: str, scale: float) -> dict[str, tuple[int, ...]]:
    """Counts per split and class at `scale` (at least 2 per cell, so every class stays present)."""
    return {
        split: tuple(max(2, round(n * scale)) for n in per_class)
        for split, per_class in DEFAULT_COUNTS[dataset].items()
    }


def _shape(dataset: str, image_size: int | None, rng: np.random.Generator) -> tuple[int, int]:
    width, height = DEFAULT_SHAPES[dataset]
    if dataset == "montgomery" and rng.random() < 0.3:
        width, height = height, width  # the real set has portrait and landscape films
    if dataset == "guangzhou":
        width = round(height * rng.uniform(1.1, 1.6))  # paediatric films vary in shape
    if image_size is not None:
        factor = image_size / max(width, height)
        width, height = max(8, round(width * factor)), max(8, round(height * factor))
    return width, height


def _to_gray(image: np.ndarray, bits: int = 8) -> Image.Image:
    peak = 2**bits - 1
    pixels = np.round(np.clip(image, 0, 1) * peak)
    return Image.fromarray(pixels.astype(np.uint16 if bits > 8 else np.uint8))


def _to_rgb(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))


def render_array(dataset: str, label: int, rng: np.random.Generator, image_size: int | None) -> np.ndarray:
    """One synthetic image of class `label` as floats in [0, 1]: (H, W) gray or (H, W, 3) RGB."""
    width, height = _shape(dataset, image_size, rng)
    spec = get_dataset(dataset)
    if spec.modality == "chest_xray":
        finding = None if label == 0 else ("pneumonia" if dataset == "guangzhou" else "tb")
        return draw_chest(rng, height, width, finding)
    if spec.modality == "fundus":
        return draw_fundus(rng, height, width, label)
    return draw_skin(rng, height, width, spec.classes[label])


def _render(dataset: str, label: int, rng: np.random.Generator, image_size: int | None,
            shifts: list[tuple[str, float]], shift_rng: np.random.Generator) -> Image.Image:
    image = apply_shifts(render_array(dataset, label, rng, image_size), shifts, shift_rng)
    if image.ndim == 2:
        # Montgomery's films are 12-bit data in 16-bit PNGs; the others are 8-bit.
        return _to_gray(image, bits=12 if dataset == "montgomery" else 8)
    return _to_rgb(image)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # the publishers' CSVs use CRLF
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")


class _Writer:
    """Renders image number n of a dataset from its own seed, so output never depends on order."""

    def __init__(self, dataset: str, seed: int, image_size: int | None, progress: bool, total: int,
                 shifts: list[tuple[str, float]]):
        self.dataset, self.seed, self.image_size, self.shifts = dataset, seed, image_size, shifts
        self.dataset_index = list(DATASETS).index(dataset)
        self.count = 0
        self.bar = tqdm(total=total, desc=f"synthesising {dataset}", unit="img", disable=not progress)

    def write(self, path: Path, label: int, **save_options: object) -> None:
        rng = np.random.default_rng([self.seed, self.dataset_index, self.count])
        # A separate stream for the shift, so a shifted stand-in shows the same anatomy as the
        # unshifted one of the same seed, acquired differently.
        shift_rng = np.random.default_rng([self.seed, self.dataset_index, self.count, 1])
        self.count += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        _render(self.dataset, label, rng, self.image_size, self.shifts, shift_rng).save(path, **save_options)
        self.bar.update(1)


def _labels_in_order(per_class: tuple[int, ...], rng: np.random.Generator | None) -> list[int]:
    """Labels for one split: grouped by class, or shuffled (files numbered in random class order)."""
    labels = [label for label, n in enumerate(per_class) for _ in range(n)]
    if rng is not None:
        rng.shuffle(labels)
    return labels


def _write_nlm(out: Path, prefix: str, counts: dict, writer: _Writer) -> None:
    """CXR_png/<prefix>_####_<label>.png plus publisher extras that parsers must ignore."""
    # The real sets number normals first, then TB cases.
    for number, label in enumerate(_labels_in_order(counts["train"], None), start=1):
        name = f"{prefix}_{number:04d}_{label}"
        writer.write(out / "CXR_png" / f"{name}.png", label)
        reading = "normal" if label == 0 else "upper lobe infiltrates, cavitation"
        (out / "ClinicalReadings").mkdir(exist_ok=True)
        (out / "ClinicalReadings" / f"{name}.txt").write_text(f"Patient's Sex: F\nPatient's Age: 040Y\n{reading}\n")
    if prefix == "MCUCXR":  # Montgomery ships lung masks as PNGs beside the films
        mask_dir = out / "ManualMask" / "leftMask"
        mask_dir.mkdir(parents=True, exist_ok=True)
        Image.new("L", (16, 16), 255).save(mask_dir / "MCUCXR_0001_0.png")


def _write_guangzhou(out: Path, counts: dict, writer: _Writer) -> None:
    base = out / "chest_xray"
    for split, per_class in counts.items():
        for label, n in enumerate(per_class):
            for index in range(1, n + 1):
                if label == 0:
                    name = f"{'NORMAL2-' if split == 'val' else ''}IM-{index:04d}-0001.jpeg"
                else:
                    kind = "bacteria" if index % 3 else "virus"
                    name = f"person{index}_{kind}_{index + 1}.jpeg"
                writer.write(base / split / ("NORMAL", "PNEUMONIA")[label] / name, label, quality=90)


def _write_idrid(out: Path, counts: dict, writer: _Writer, seed: int) -> None:
    base = out / "B. Disease Grading"
    order_rng = np.random.default_rng([seed, 99])
    for (image_folder, csv_name, split) in IDRID_SETS:
        rows = []
        for index, grade in enumerate(_labels_in_order(counts[split], order_rng), start=1):
            name = f"IDRiD_{index:03d}"
            writer.write(base / IDRID_IMAGES / image_folder / f"{name}.jpg", grade, quality=90)
            edema = 0 if grade == 0 else int(order_rng.integers(0, 3))
            rows.append([name, str(grade), str(edema)])
        # The real header ends with a space after "Risk of macular edema".
        _write_csv(base / IDRID_TRUTHS / csv_name, ["Image name", "Retinopathy grade", "Risk of macular edema "], rows)


def _write_isic(out: Path, counts: dict, writer: _Writer, seed: int) -> None:
    classes = get_dataset("isic2018").classes
    order_rng = np.random.default_rng([seed, 98])
    first_ids = {"train": 24306, "val": 34321, "test": 34524}  # the real sets' first image ids
    for part, split in (("Training", "train"), ("Validation", "val"), ("Test", "test")):
        folder = out / f"ISIC2018_Task3_{part}_Input"
        rows = []
        for offset, label in enumerate(_labels_in_order(counts[split], order_rng)):
            name = f"ISIC_{first_ids[split] + offset:07d}"
            writer.write(folder / f"{name}.jpg", label, quality=90)
            rows.append([name] + ["1.0" if k == label else "0.0" for k in range(len(classes))])
        (folder / "LICENSE.txt").write_text("synthetic stand-in, no licence needed\n")
        truth = out / f"ISIC2018_Task3_{part}_GroundTruth" / f"ISIC2018_Task3_{part}_GroundTruth.csv"
        _write_csv(truth, ["image", *classes], rows)


def _marker(dataset: str, seed: int, scale: float, image_size: int | None, counts: dict,
            shift: str) -> dict:
    classes = get_dataset(dataset).classes
    return {
        "dataset": dataset,
        "seed": seed,
        "scale": scale,
        "image_size": image_size,
        "shift": shift,
        "counts": {split: dict(zip(classes, per_class, strict=True)) for split, per_class in counts.items()},
        "note": "synthetic stand-in written by medguna.data.synthesize; not medical data",
    }


def synthesize(
    dataset: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    image_size: int | None = None,
    progress: bool = False,
    shift: str = NO_SHIFT,
) -> Path:
    """Write a synthetic `dataset` into `out_dir` in its official layout; return the root to load.

    `scale` multiplies the default counts, `image_size` sets the longer image side in pixels,
    `shift` names acquisition shifts (medguna.data.shifts: "none", "demo" or "gamma=0.6,...").
    Calling again with the same arguments on a finished folder is a no-op; any other non-empty
    folder is refused so a real download is never mixed with synthetic images.
    """
    spec = get_dataset(dataset)
    if not scale > 0:
        raise ConfigError(f"synthetic scale must be positive, got {scale}")
    if image_size is not None and not MIN_SIDE <= image_size <= MAX_SIDE:
        raise ConfigError(f"synthetic image_size must be {MIN_SIDE}-{MAX_SIDE} pixels, got {image_size}")
    out = Path(out_dir).expanduser().resolve()
    counts = scaled_counts(spec.name, scale)
    shifts = parse_shift(shift, spec.modality)
    marker = _marker(spec.name, seed, scale, image_size, counts, canonical_shift(shift, spec.modality))
    marker_path = out / SYNTHETIC_MARKER
    if out.exists() and any(out.iterdir()):
        if _settings(_read_marker(marker_path)) == marker:
            return out
        raise DataError(
            f"{out} is not empty; synthesize writes only into a new or empty folder "
            "(or one it filled before with the same dataset, seed, scale, image_size and shift)"
        )
    out.mkdir(parents=True, exist_ok=True)
    total = sum(sum(per_class) for per_class in counts.values())
    writer = _Writer(spec.name, seed, image_size, progress, total, shifts)
    writers: dict[str, Callable[[], None]] = {
        "shenzhen": lambda: _write_nlm(out, "CHNCXR", counts, writer),
        "montgomery": lambda: _write_nlm(out, "MCUCXR", counts, writer),
        "guangzhou": lambda: _write_guangzhou(out, counts, writer),
        "idrid": lambda: _write_idrid(out, counts, writer, seed),
        "isic2018": lambda: _write_isic(out, counts, writer, seed),
    }
    with writer.bar:
        writers[spec.name]()
    # The marker goes last: its presence means the folder is complete. It lists every file's
    # sha256, so a damaged stand-in is found (stand_in_problem) and written again.
    write_json_atomic(marker_path, {**marker, "files": _file_hashes(out)})
    return out


def _file_hashes(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != SYNTHETIC_MARKER}


def _read_marker(path: Path) -> dict | None:
    """The marker's contents, or None where it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _settings(marker: dict | None) -> dict | None:
    """What a marker says of how the stand-in was made (without its file list)."""
    return None if marker is None else {k: v for k, v in marker.items() if k != "files"}


def stand_in_problem(root: str | Path, dataset: str, *, seed: int = 0, scale: float = 1.0,
                     image_size: int | None = None, shift: str = NO_SHIFT) -> str:
    """What is wrong with a stand-in synthesize wrote into `root`, or "" when every file is intact."""
    spec = get_dataset(dataset)
    root = Path(root)
    marker_path = root / SYNTHETIC_MARKER
    marker = _read_marker(marker_path)
    if marker is None:
        return f"without a readable {SYNTHETIC_MARKER}"
    expected = _marker(spec.name, seed, scale, image_size, scaled_counts(spec.name, scale),
                       canonical_shift(shift, spec.modality))
    if _settings(marker) != expected:
        return f"made with other settings than its folder name says ({SYNTHETIC_MARKER})"
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return f"without file checksums in {SYNTHETIC_MARKER} (written by an earlier medguna)"
    for relative, digest in files.items():
        path = root / relative
        if not path.is_file():
            return f"missing {relative}"
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return f"holding a damaged {relative} (checksum mismatch)"
    return ""
