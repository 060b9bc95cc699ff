"""medguna pretrain-demo: a tiny recipe runs end to end and writes a checkpoint the real loader reads."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medguna.cli import main
from medguna.models.medclip_config import DEMO_NAME
from medguna.models.registry import build_encoder
from medguna.pretraining.demo_encoder import soft_clip_loss


def test_soft_clip_loss_counts_every_same_concept_pair_as_a_positive():
    features = torch.eye(3)[[0, 0, 1]]
    concepts = torch.tensor([0, 0, 1])
    scale = torch.tensor(0.0)  # exp(0) = 1
    # Row 0: logits (1, 1, 0) against targets (1/2, 1/2, 0): -log(e / (2e + 1)) on each positive.
    expected_row = -math.log(math.e / (2 * math.e + 1))
    row2 = -math.log(math.e / (math.e + 2))
    expected = (2 * expected_row + row2) / 3
    assert float(soft_clip_loss(features, features, concepts, scale)) == pytest.approx(expected, abs=1e-6)


def test_pretrain_demo_writes_a_checkpoint_the_release_loader_reads(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["pretrain-demo", "--out", str(out), "--steps", "2", "--images-per-class", "1",
                 "--batch-size", "4", "--warmup-steps", "1"]) == 0
    assert {"model.safetensors", "vocab.txt", "medguna_medclip_config.json", "recipe.json"} <= {
        p.name for p in out.iterdir()}
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["recipe"]["steps"] == 2 and recipe["source_domain"]["shift"] == "none"
    assert "not medical data" in recipe["what"]
    encoder = build_encoder("medclip-vit", str(out))
    assert encoder.model.config.name == DEMO_NAME
    with torch.no_grad():
        embeddings = encoder.encode_texts(["a TB chest x-ray", "a NORMAL chest x-ray"])
    assert embeddings.shape == (2, 512) and torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)
