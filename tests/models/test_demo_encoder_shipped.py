"""The demonstration encoder shipped in the package: found, loaded by the release loader, labelled."""

from __future__ import annotations

import json

import torch

from medguna.analysis.cohorts import cohort_label, cohort_slug
from medguna.config import ModelConfig
from medguna.models.demo_encoder import SHIPPED_DIR, demo_checkpoint_dir, encoder_description
from medguna.models.medclip_config import DEMO_NAME
from medguna.models.registry import build_encoder
from medguna.pretraining.demo_encoder import RECIPE_FILE


def test_the_shipped_weights_are_small_safetensors_with_their_recipe():
    folder = demo_checkpoint_dir()
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    assert not list(folder.glob("*.bin"))  # nothing that would need pickle to load
    recipe = json.loads((folder / RECIPE_FILE).read_text())
    assert "not medical data" in recipe["what"] and recipe["source_domain"]["shift"] == "none"
    assert recipe["rebuild"].startswith("medguna pretrain-demo")


def test_no_checkpoint_means_the_demonstration_encoder_and_it_says_so():
    assert ModelConfig().builtin == "demo" and ModelConfig(checkpoint="demo").builtin == "demo"
    assert ModelConfig(checkpoint="test-size").builtin == "test-size"
    assert ModelConfig(checkpoint="/models/medclip").builtin is None
    assert "not MedCLIP" in encoder_description(ModelConfig())
    assert "random weights" in encoder_description(ModelConfig(checkpoint="test-size"))
    encoder = build_encoder("medclip-vit", None)
    assert encoder.model.config.name == DEMO_NAME
    assert encoder.info["checkpoint"] == "demo" and encoder.info["is_demo"] and not encoder.info["is_test_size"]
    assert encoder.info["checkpoint_path"].startswith(str(SHIPPED_DIR))
    with torch.no_grad():
        texts = encoder.encode_texts(["a chest x-ray with tuberculosis", "a normal chest x-ray"])
    assert texts.shape == (2, 512)


def test_demonstration_results_form_their_own_labelled_cohort():
    assert cohort_slug("synthetic", "demo") == "synthetic-demo"
    assert cohort_slug("real", "demo") == "real-demo"
    assert cohort_label("synthetic-demo") == "SYNTHETIC DATA + DEMONSTRATION ENCODER (not MedCLIP)"
    assert cohort_slug("real", "/models/medclip/pytorch_model.bin") == "real"
