"""Encoder interface and registry on the test-size MedCLIP."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
import torch.nn.functional as F

from medguna.errors import CheckpointError, ConfigError, DataError
from medguna.models import build_encoder, list_encoders, register_encoder
from medguna.models.commands import add_commands

TEXTS = [
    "a photo of a normal chest x_ray",
    "pneumonia",
    "Tuberculosis shows cavitary lesions in the upper lobes with fibrosis, clear lung fields",
    "no effusion",
    "diabetic retinopathy with microaneurysms",
]


def test_registry_lists_and_rejects_unknown_names():
    assert "medclip-vit" in list_encoders()
    with pytest.raises(ConfigError, match=r"unknown encoder 'clip-rn50'.*medclip-vit"):
        build_encoder("clip-rn50", cache_dir="unused", vocab_texts=["x"])

    @register_encoder("fake-for-test")
    def fake(checkpoint, tokenizer, *, cache_dir, vocab_texts):
        return ("fake", checkpoint, cache_dir, vocab_texts)

    assert build_encoder("fake-for-test", "ckpt", cache_dir="c", vocab_texts=["t"]) == (
        "fake",
        "ckpt",
        "c",
        ["t"],
    )
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("fake-for-test")(lambda *a, **k: None)


def test_test_size_needs_cache_dir_and_texts():
    with pytest.raises(ConfigError, match="needs cache_dir and vocab_texts"):
        build_encoder(checkpoint="test-size")


def test_test_size_checkpoint_builds_the_random_model_and_says_so(tmp_path, vocab_texts):
    encoder = build_encoder(checkpoint="test-size", cache_dir=tmp_path, vocab_texts=vocab_texts)
    info = encoder.info
    assert info["checkpoint"] == "test-size" and info["is_test_size"] is True
    assert len(info["checkpoint_sha256"]) == 64
    assert info["parameters"]["vision"] == sum(
        p.numel() for p in encoder.model.vision_model.parameters()
    )
    assert info["load_report"]["entries"] == 218 and info["load_report"]["missing"] == 0
    assert (encoder.embed_dim, encoder.prompt_dim, encoder.image_size) == (512, 24, 224)
    # nothing is frozen here; eval mode so drop-path/dropout add no noise to frozen features
    assert all(p.requires_grad for p in encoder.parameters())
    assert not encoder.training and not encoder.model.vision_model.model.training


def test_checkpoint_without_tokenizer_is_a_clear_error(tmp_path, test_size_dir):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("pytorch_model.bin", "medguna_medclip_config.json"):
        (folder / name).write_bytes((test_size_dir / name).read_bytes())
    with pytest.raises(CheckpointError, match=r"no tokenizer given and no vocab\.txt"):
        build_encoder(checkpoint=str(folder))
    encoder = build_encoder(checkpoint=str(folder), tokenizer=str(test_size_dir))
    assert encoder.info["is_test_size"] and encoder.info["checkpoint"].endswith("pytorch_model.bin")


def test_encode_texts_batched_equals_one_at_a_time(encoder):
    with torch.no_grad():
        batched = encoder.encode_texts(TEXTS, batch_size=2)
        single = torch.cat([encoder.encode_texts([text]) for text in TEXTS])
    assert batched.shape == (5, 512)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(5))
    assert encoder.encode_texts([]).shape == (0, 512)


def test_text_embedding_is_mean_of_hidden_states_1_2_last(encoder):
    tokens = encoder.tokenizer(["a photo of a normal chest x_ray"], return_tensors="pt")
    with torch.no_grad():
        states = encoder.model.text_model.model(**tokens, output_hidden_states=True).hidden_states
        by_hand = (states[1].mean(1) + states[2].mean(1) + states[-1].mean(1)) / 3
        expected = F.normalize(encoder.model.text_model.projection_head(by_hand), dim=-1)
        got = encoder.encode_texts(["a photo of a normal chest x_ray"])
    assert len(states) == 4  # embeddings + 3 layers, so [2] and [-1] differ
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_image_features_are_raw_projection_of_swin_pooler(encoder):
    pixels = torch.randn(2, 1, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = encoder.image_features(pixels)
        pooled = encoder.model.vision_model.model(pixels.repeat(1, 3, 1, 1)).pooler_output
        expected = encoder.model.vision_model.projection_head(pooled)
        rgb = encoder.image_features(pixels.repeat(1, 3, 1, 1))
    assert features.shape == (2, 512)
    torch.testing.assert_close(features, expected)
    torch.testing.assert_close(features, rgb)
    assert not torch.allclose(features.norm(dim=-1), torch.ones(2))  # not normalised


def test_image_features_bad_shape(encoder):
    with pytest.raises(DataError, match=r"\(B, 1 or 3, 224, 224\); got \(2, 3, 200, 200\)"):
        encoder.image_features(torch.zeros(2, 3, 200, 200))
    with pytest.raises(ConfigError, match="unknown prompt insertion 'middle'"):
        encoder.image_features(torch.zeros(1, 3, 224, 224), torch.zeros(3, 24), insertion="middle")


def test_bf16_autocast_runs(encoder):
    prompts = torch.zeros(7, encoder.prompt_dim, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = encoder.image_features(torch.randn(1, 3, 224, 224), prompts)
        texts = encoder.encode_texts(["normal chest"])
    features.float().sum().backward()
    assert features.shape == (1, 512) and texts.shape == (1, 512)
    assert prompts.grad is not None and torch.isfinite(prompts.grad).all()
    encoder.zero_grad(set_to_none=True)  # the encoder fixture is shared


def _run_check_model(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_model_test_size(capsys):
    assert _run_check_model(["check-model", "--test-size"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint: test-size" in out
    assert "parameters[vision]: 1,387,494" in out
    assert "load report: entries 218, used 209, recomputed 9" in out
    assert "encode_texts(['a chest x-ray with no abnormal findings']): shape (1, 512), norm 1.0000" in out
    # The smoke image is not blank: a tower with zero biases maps a constant image to exactly zero.
    norm = float(re.search(r"smoke image_features\(radial pattern 1x1x224x224\): shape \(1, 512\), norm ([0-9.]+)",
                           out).group(1))
    assert norm > 0.1


def test_check_model_reports_errors(tmp_path, capsys, test_size_dir):
    assert _run_check_model(["check-model", "--checkpoint", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err
    args = ["check-model", "--checkpoint", str(test_size_dir), "--tokenizer", str(tmp_path)]
    assert _run_check_model(args) == 1
    assert "has no vocab.txt" in capsys.readouterr().err


def test_texts_longer_than_clip_77_tokens_are_encoded_whole(encoder):
    """The reference encodes each description untruncated (BERT takes 512 positions); a 77-token
    cut, CLIP's limit, would drop the end of long LLM sentences."""
    long_text = " ".join(["clear lung fields, no effusion, sharp costophrenic angles"] * 10)
    ids = encoder.tokenizer([long_text])["input_ids"][0]
    assert 77 < len(ids) <= encoder.max_text_tokens == 128  # the test-size text tower's positions
    cut = encoder.tokenizer.decode(ids[1:76])  # what a 77-token limit keeps, without [CLS]/[SEP]
    with torch.no_grad():
        whole, truncated = encoder.encode_texts([long_text, cut])
    assert not torch.allclose(whole, truncated, atol=1e-4)


@pytest.mark.parametrize("section,key,value,message", [
    ("vision", "embed_dim", -24, "vision.embed_dim=-24 must be a positive integer"),
    ("text", "vocab_size", 10**10, "about 640 billion parameters"),  # would allocate terabytes
])
def test_check_model_refuses_an_impossible_config_before_building(tmp_path, capsys, test_size_dir,
                                                                  section, key, value, message):
    import json
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(test_size_dir, copy)
    config_path = copy / "medguna_medclip_config.json"
    config = json.loads(config_path.read_text())
    config[section][key] = value
    config_path.write_text(json.dumps(config))
    assert _run_check_model(["check-model", "--checkpoint", str(copy)]) == 1
    err = capsys.readouterr().err
    assert message in err and "medguna_medclip_config.json is invalid" in err and "Traceback" not in err


def test_check_model_refuses_an_empty_vocab_txt(tmp_path, capsys, test_size_dir):
    (tmp_path / "vocab.txt").write_text("")
    assert _run_check_model(["check-model", "--checkpoint", str(test_size_dir), "--tokenizer", str(tmp_path)]) == 1
    assert f"{tmp_path / 'vocab.txt'} is empty: it is not a BERT WordPiece vocabulary" in capsys.readouterr().err
