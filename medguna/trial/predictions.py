"""Per-image predictions of a trial, written as one Parquet file next to its result.json.

Paired tests (the same test images scored by two configurations), bootstrap intervals and
reliability diagrams need each image's outcome, not only the aggregate metrics. The file holds
the adapted student at the selected epoch and the zero-shot baseline, on validation and test:

    model ("adapted" | "zeroshot"), split ("val" | "test"), epoch (selected epoch; 0 for
    zero-shot), image_id (path relative to the data root), label, predicted, prob_<class>...
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import torch

from medguna.errors import DataError

PREDICTIONS_FILE = "predictions.parquet"
MODELS = ("adapted", "zeroshot")


def prob_column(class_name: str) -> str:
    return f"prob_{class_name}"


def image_ids(paths: Sequence[str], root: Path) -> list[str]:
    """Paths relative to the data root: stable across machines that mount the data elsewhere."""
    ids = []
    for path in paths:
        try:
            ids.append(Path(path).relative_to(root).as_posix())
        except ValueError:
            ids.append(Path(path).as_posix())
    return ids


def prediction_frame(model: str, split: str, epoch: int, ids: Sequence[str], labels: torch.Tensor,
                     probs: torch.Tensor, class_names: Sequence[str]) -> pl.DataFrame:
    """One row per image of `split` as scored by `model` (probabilities in class order)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    probs = probs.detach().float().cpu()
    if probs.shape != (len(ids), len(class_names)) or labels.shape != (len(ids),):
        raise ValueError(f"{split}: {len(ids)} images but probs {tuple(probs.shape)} and labels "
                         f"{tuple(labels.shape)} for {len(class_names)} classes")
    columns = {
        "model": [model] * len(ids),
        "split": [split] * len(ids),
        "epoch": [epoch] * len(ids),
        "image_id": list(ids),
        "label": labels.cpu().tolist(),
        "predicted": probs.argmax(dim=1).tolist() if len(ids) else [],
    }
    for k, name in enumerate(class_names):
        columns[prob_column(name)] = probs[:, k].tolist()
    schema = {"model": pl.String, "split": pl.String, "epoch": pl.Int64, "image_id": pl.String,
              "label": pl.Int64, "predicted": pl.Int64,
              **{prob_column(n): pl.Float64 for n in class_names}}
    return pl.DataFrame(columns, schema=schema)


def write_predictions(folder: str | Path, frames: Sequence[pl.DataFrame]) -> Path:
    """Write the frames as `<folder>/predictions.parquet`, atomically (never a torn file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / PREDICTIONS_FILE
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{PREDICTIONS_FILE}.")
    os.close(fd)
    try:
        pl.concat(list(frames), how="vertical").write_parquet(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_predictions(path: str | Path) -> pl.DataFrame:
    """A predictions file, checked for the columns the analysis relies on."""
    path = Path(path)
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{path} is not a readable Parquet file ({exc}); rerun the trial or delete "
                        "the file") from None
    missing = {"model", "split", "image_id", "label", "predicted"} - set(frame.columns)
    if missing or not any(c.startswith("prob_") for c in frame.columns):
        raise DataError(f"{path} lacks the columns {sorted(missing) or ['prob_<class>']}: it was not "
                        "written by medguna's trial loop; rerun the trial")
    return frame


def probabilities(frame: pl.DataFrame) -> torch.Tensor:
    """(N, K) class probabilities of a predictions frame, in class order."""
    columns = [c for c in frame.columns if c.startswith("prob_")]
    return torch.tensor(frame.select(columns).to_numpy(), dtype=torch.float64)
