"""Per-image predictions written by a trial: what the analysis' paired tests and intervals read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from medguna.method.metrics import classification_metrics
from medguna.trial.predictions import (
    PREDICTIONS_FILE,
    image_ids,
    prediction_frame,
    probabilities,
    read_predictions,
    write_predictions,
)


def check_trial_predictions(logdir: Path, final: dict, classes: list[str]) -> None:
    """The predictions file of a finished trial reproduces its test metrics, adapted and zero-shot.

    Called by the trial command's test, which already runs a trial (one trial run less).
    """
    frame = read_predictions(logdir / PREDICTIONS_FILE)
    assert frame.columns == ["model", "split", "epoch", "image_id", "label", "predicted",
                             *(f"prob_{c}" for c in classes)]
    counts = frame.group_by("model", "split").len().sort("model", "split")
    n_test, n_val = counts["len"][0], counts["len"][1]
    assert counts.select("model", "split").rows() == [("adapted", "test"), ("adapted", "val"),
                                                       ("zeroshot", "test"), ("zeroshot", "val")]
    assert counts["len"].to_list() == [n_test, n_val, n_test, n_val] and min(n_test, n_val) > 0
    for model, prefix, epoch in (("adapted", "test_", final["selected_epoch"]),
                                 ("zeroshot", "zeroshot_test_", 0)):
        part = frame.filter((pl.col("model") == model) & (pl.col("split") == "test"))
        assert part["epoch"].unique().to_list() == [epoch]
        probs = probabilities(part)
        assert probs.sum(dim=1).numpy() == pytest.approx(np.ones(part.height), abs=1e-5)
        assert part["predicted"].to_list() == probs.argmax(dim=1).tolist()
        again = classification_metrics(probs, torch.tensor(part["label"].to_list()), classes)
        for metric in ("balanced_accuracy", "accuracy", "ece", "brier"):
            assert again[metric] == pytest.approx(final[f"{prefix}{metric}"], abs=1e-6), (model, metric)


def test_prediction_frame_checks_shapes_and_writes_atomically(tmp_path):
    ids = image_ids(["/data/set/a/1.png", "/elsewhere/2.png"], tmp_path.parent / "nowhere")
    assert ids == ["/data/set/a/1.png", "/elsewhere/2.png"]
    assert image_ids(["/data/set/a/1.png"], Path("/data/set")) == ["a/1.png"]
    probs = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    frame = prediction_frame("adapted", "test", 3, ["a.png", "b.png"], torch.tensor([1, 1]), probs, ["x", "y"])
    assert frame["predicted"].to_list() == [1, 0]
    with pytest.raises(ValueError, match=r"1 images but probs \(2, 2\)"):
        prediction_frame("adapted", "test", 3, ["a.png"], torch.tensor([1, 1]), probs, ["x", "y"])
    path = write_predictions(tmp_path, [frame])
    assert [p.name for p in tmp_path.iterdir()] == [PREDICTIONS_FILE]
    assert read_predictions(path).equals(frame)
