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


TINY = ["--image-steps", "2", "--tower-steps", "2", "--text-steps", "2", "--images-per-class", "1",
        "--views-per-image", "2", "--batch-size", "4", "--warmup-steps", "1"]


def test_pretrain_demo_writes_a_checkpoint_the_release_loader_reads(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["pretrain-demo", "--out", str(out), *TINY]) == 0
    assert {"model.safetensors", "vocab.txt", "medguna_medclip_config.json", "recipe.json"} <= {
        p.name for p in out.iterdir()}
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["recipe"]["image_steps"] == 2 and recipe["recipe"]["tower_steps"] == 2 and recipe["source_domain"]["shift"] == "none"
    assert "not medical data" in recipe["what"]
    encoder = build_encoder("medclip-vit", str(out))
    assert encoder.model.config.name == DEMO_NAME
    with torch.no_grad():
        embeddings = encoder.encode_texts(["a TB chest x-ray", "a NORMAL chest x-ray"])
    assert embeddings.shape == (2, 512) and torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)


def test_phase3_on_a_saved_image_tower_gives_the_weights_of_a_full_build(tmp_path, capsys):
    from safetensors.torch import load_file

    full, again = tmp_path / "full", tmp_path / "again"
    assert main(["pretrain-demo", "--out", str(full), *TINY]) == 0
    assert main(["pretrain-demo", "--out", str(again), *TINY, "--image-tower-from", str(full)]) == 0
    a, b = load_file(full / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "vocab.txt").read_bytes() == (again / "vocab.txt").read_bytes()
    record = json.loads((again / "recipe.json").read_text())
    assert record["image_tower_from"]["format"] == record["format"]
    assert set(record["loss_first_last"]) == {"image", "tower", "text"}
    assert "no prompt templates" in record["source_domain"]["captions"]

    # Another image-phase recipe would not have made that tower: refused, naming the field.
    capsys.readouterr()
    assert main(["pretrain-demo", "--out", str(tmp_path / "other"), *TINY, "--tower-steps", "3",
                 "--image-tower-from", str(full)]) == 2
    assert "tower_steps 2 there vs 3 here" in capsys.readouterr().err


def test_captions_are_report_language_and_the_vocabulary_covers_every_trial_text():
    from medguna.pretraining.demo_encoder import concept_captions, vocabulary_captions

    captions = concept_captions("shenzhen", 1)
    assert "a TB chest x-ray" in captions  # the name, once per wrapper
    assert not any("photo of the TB" in c for c in captions)  # no CLIP prompt templates
    assert set(captions) < set(vocabulary_captions("shenzhen", 1))
    assert "a dark photo of the TB." in vocabulary_captions("shenzhen", 1)


def test_first_stage_and_later_stages_compose_to_the_vision_tower():
    from medguna.models.medclip import build_medclip
    from medguna.models.medclip_config import demo_config
    from medguna.pretraining.demo_encoder import first_stage_features, later_stages

    model = build_medclip(demo_config(), seed=3).eval()
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        split = later_stages(model, first_stage_features(model, pixels))
        whole = model.vision_model(pixels)
    assert torch.allclose(split, whole, atol=1e-5)


def test_each_phase_trains_only_its_part_of_the_model(tmp_path):
    from medguna.models.medclip import build_medclip
    from medguna.models.medclip_config import demo_config
    from medguna.models.tokenizer import build_wordpiece_vocab, load_tokenizer, write_vocab
    from medguna.pretraining.demo_encoder import (
        PretrainRecipe,
        cache_views,
        render_source_domain,
        train_image_tower,
        train_text_tower,
        train_whole_image_tower,
    )

    recipe = PretrainRecipe(images_per_class=1, views_per_image=1, image_steps=2, tower_steps=2, text_steps=2,
                            batch_size=4, warmup_steps=1)
    domain = render_source_domain(recipe, progress=False)
    model = build_medclip(demo_config(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    views = cache_views(model, domain, recipe, progress=False)
    assert views.features.shape == (len(domain.image_concepts), 28 * 28, 48)
    losses, prototypes = train_image_tower(model, views, domain, recipe, progress=False)
    assert len(losses) == 2 and prototypes.shape == (len(domain.concepts), 512)
    after_stages = {k: v.clone() for k, v in model.state_dict().items()}
    changed = {k for k in before if not torch.equal(before[k], after_stages[k])}
    assert changed and all(".encoder.layers.0." not in k and "embeddings" not in k for k in changed)
    assert any(".encoder.layers.3." in k for k in changed) and not any(k.startswith("text_model") for k in changed)

    # Phase 2 reaches the patch embedding and first stage, and still leaves the text tower alone.
    assert len(train_whole_image_tower(model, domain, prototypes, recipe, progress=False)) == 2
    after_image = {k: v.clone() for k, v in model.state_dict().items()}
    changed = {k for k in before if not torch.equal(after_stages[k], after_image[k])}
    assert any("embeddings.patch_embeddings" in k for k in changed)
    assert any(".encoder.layers.0." in k for k in changed)
    assert all(k.startswith("vision_model") for k in changed)

    write_vocab(build_wordpiece_vocab([c for cs in domain.captions for c in cs], 1024), tmp_path)
    train_text_tower(model, load_tokenizer(tmp_path), domain, recipe, progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(after_image[k], v)}
    assert changed and all(k.startswith("text_model") or k == "logit_scale" for k in changed)
