"""The local Hugging Face back-end on a tiny random GPT-2 built here, loaded offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from medguna.errors import CheckpointError
from medguna.text.describe.backends import SamplingSettings
from medguna.text.describe.commands import add_commands
from medguna.text.describe.hf_backend import HuggingFaceBackend

# Each token is a whole sentence ("_" decodes to a space), so whatever the random model
# samples decodes to well-formed text that the cleaning can keep.
SENTENCE_TOKENS = [
    "Cavities_appear_in_the_upper_lobes._",
    "Hilar_lymph_nodes_are_enlarged._",
    "The_lung_fields_are_clear._",
    "Miliary_nodules_are_scattered_throughout._",
    "The_heart_size_is_normal._",
    "Pleural_effusion_blunts_the_costophrenic_angle._",
]
SENTENCES = {token.replace("_", " ").strip() for token in SENTENCE_TOKENS}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    vocab = {"<unk>": 0, "<eos>": 1, "<pad>": 2}
    for token in SENTENCE_TOKENS:
        vocab[token] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.Replace("_", " ")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=1, eos_token_id=1, pad_token_id=2)
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_samples_are_seeded_by_index_and_leave_global_rng_alone(tiny_model_dir) -> None:
    backend = HuggingFaceBackend(tiny_model_dir)
    sampling = SamplingSettings(max_tokens=5, seed=11)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = backend.complete("Describe TB.", sampling, count=3, first_index=0)
    assert torch.rand(1) == expected_next  # generation did not consume the caller's RNG
    again = backend.complete("Describe TB.", sampling, count=3, first_index=0)
    later = backend.complete("Describe TB.", sampling, count=3, first_index=3)
    assert len(first) == 3 and first == again
    assert [c.text for c in later] != [c.text for c in first]
    for completion in first:
        assert completion.finish_reason in ("stop", "length")
        pieces = [piece.strip() + "." for piece in completion.text.split(".") if piece.strip()]
        assert len(pieces) <= 5  # at most one sentence per new token
        assert set(pieces) <= SENTENCES


def test_describe_with_local_model_writes_descriptions(tiny_model_dir, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="medguna")
    add_commands(parser.add_subparsers(required=True))
    out = tmp_path / "guangzhou.json"
    argv = ["describe", "guangzhou", "--backend", "hf", "--model", str(tiny_model_dir),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--samples", "2",
            "--max-tokens", "6", "--seed", "3", "--no-progress"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    descriptions = json.loads(out.read_text())
    assert list(descriptions) == ["NORMAL", "PNEUMONIA"]
    for sentences in descriptions.values():
        assert sentences and set(sentences) <= SENTENCES
        assert len(set(sentences)) == len(sentences)
    provenance = json.loads((tmp_path / "guangzhou.json.provenance.json").read_text())
    assert provenance["backend"] == "hf"
    assert provenance["model"] == str(tiny_model_dir.resolve())
    assert provenance["counts"]["NORMAL"]["completions"] == 6
    assert provenance["counts"]["PNEUMONIA"]["kept"] == len(descriptions["PNEUMONIA"])
    assert "PNEUMONIA:" in capsys.readouterr().out

    # The cache answers a second run even though the model is the same: no generation.
    first = out.read_bytes()
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert out.read_bytes() == first
    again = json.loads((tmp_path / "guangzhou.json.provenance.json").read_text())
    assert again["samples_from_cache"] == 12 and again["requests_sent"] == 0


def test_missing_model_directory_is_named(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"no-such-model is not a Hugging Face model "
                                              r"directory \(no config.json\)"):
        HuggingFaceBackend(tmp_path / "no-such-model")


def test_directory_without_weights_is_a_checkpoint_error(tiny_model_dir, tmp_path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="cannot load a causal LM and tokenizer from"):
        HuggingFaceBackend(broken)
