"""Tokenizer folder loading, the deterministic vocab builder, and the cached test-size checkpoint."""

from __future__ import annotations

import json

import pytest

from medguna.errors import ConfigError
from medguna.models import build_wordpiece_vocab, ensure_test_size_checkpoint, load_tokenizer
from medguna.models.checkpoint import BIN_NAME, file_sha256
from medguna.models.tokenizer import write_vocab

TEXTS = ["Normal chest", "pneumonia in the left lobe", "normal heart size", "normal"]


def test_vocab_is_deterministic_with_specials_chars_then_words_by_frequency():
    vocab = build_wordpiece_vocab(TEXTS, 1024)
    assert vocab == build_wordpiece_vocab(TEXTS, 1024)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted(set("".join(TEXTS).lower().replace(" ", "")))
    assert vocab[5 : 5 + len(chars)] == chars
    assert vocab[5 + len(chars) : 5 + 2 * len(chars)] == ["##" + c for c in chars]
    words = vocab[5 + 2 * len(chars) :]
    # "normal" 3x first; the rest once each, alphabetical ("a" and other 1-letter words are chars)
    assert words == ["normal", "chest", "heart", "in", "left", "lobe", "pneumonia", "size", "the"]


def test_vocab_respects_size_limit():
    vocab = build_wordpiece_vocab(TEXTS, 12)
    assert len(vocab) == 12
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_tokenizer_lower_cases_by_default_and_has_bert_max_length_512(tmp_path):
    write_vocab(build_wordpiece_vocab(TEXTS, 1024), tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.model_max_length == 512  # BERT's positions, not CLIP's 77
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("NORMAL Chest")["input_ids"])
    assert tokens == ["[CLS]", "normal", "chest", "[SEP]"]
    assert tokenizer.pad_token_id == 0


def test_tokenizer_config_can_turn_lower_casing_off(tmp_path):
    write_vocab(build_wordpiece_vocab(TEXTS, 1024), tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    tokens = load_tokenizer(tmp_path).tokenize("Normal")
    assert tokens[0] == "[UNK]"  # the vocab only holds lower-case pieces


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_an_unreadable_tokenizer_config_names_the_file_and_the_repair(tmp_path, content):
    from medguna.errors import CheckpointError

    write_vocab(build_wordpiece_vocab(TEXTS, 1024), tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(content)
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json (is not readable JSON \(.*\)|holds list, not a JSON "
                                              r"object); fix or delete it \(vocab\.txt alone is enough\)"):
        load_tokenizer(tmp_path)


def test_test_size_checkpoint_is_cached_reproducible_and_atomic(tmp_path):
    first = ensure_test_size_checkpoint(tmp_path / "a", TEXTS, seed=0)
    written = (first / BIN_NAME).stat().st_mtime_ns
    again = ensure_test_size_checkpoint(tmp_path / "a", TEXTS, seed=0)
    assert again == first and (first / BIN_NAME).stat().st_mtime_ns == written
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [first.name]  # no temp left
    elsewhere = ensure_test_size_checkpoint(tmp_path / "b", TEXTS, seed=0)
    assert elsewhere.name == first.name
    assert file_sha256(elsewhere / BIN_NAME) == file_sha256(first / BIN_NAME)
    assert (first / "vocab.txt").read_text() == (elsewhere / "vocab.txt").read_text()
    other_seed = ensure_test_size_checkpoint(tmp_path / "a", TEXTS, seed=1)
    other_texts = ensure_test_size_checkpoint(tmp_path / "a", [*TEXTS, "effusion"], seed=0)
    assert len({first.name, other_seed.name, other_texts.name}) == 3


def test_test_size_checkpoint_needs_texts(tmp_path):
    with pytest.raises(ConfigError, match="non-empty list of strings"):
        ensure_test_size_checkpoint(tmp_path, [])
