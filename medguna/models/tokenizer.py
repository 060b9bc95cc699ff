"""Bio_ClinicalBERT's WordPiece tokenizer from a local folder, and a small vocab builder for tests.

Lower-casing: Bio_ClinicalBERT's vocab.txt is BERT-base-*cased* (28,996 entries), but its folder
has no tokenizer_config.json, so MedCLIP's `AutoTokenizer.from_pretrained(...)` fell back to
BERT's default `do_lower_case=True`: the released MedCLIP was trained on lower-cased text. medguna
therefore lower-cases by default, and follows `do_lower_case` when a tokenizer_config.json says so.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from tokenizers import normalizers, pre_tokenizers
from transformers import BertTokenizer, PreTrainedTokenizerBase

from medguna.atomic import write_text_atomic
from medguna.errors import CheckpointError
from medguna.json_records import read_json_record

VOCAB_FILE_NAME = "vocab.txt"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
# BERT's position limit: the reference never truncates descriptions; 77 is CLIP's limit, not MedCLIP's.
MODEL_MAX_LENGTH = 512
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] first: BERT's pad id is 0


def _lower_case_setting(directory: Path) -> bool:
    config_path = directory / TOKENIZER_CONFIG_NAME
    if not config_path.is_file():
        return True
    try:
        settings = read_json_record(config_path, "fix or delete it (vocab.txt alone is enough)",
                                    error=CheckpointError)
    except OSError as error:
        raise CheckpointError(
            f"cannot read {config_path}: {error}; fix or delete it (vocab.txt alone is enough)"
        ) from error
    return bool(settings.get("do_lower_case", True))


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """A fast BERT WordPiece tokenizer from `directory/vocab.txt`, model_max_length 512."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise CheckpointError(
            f"tokenizer directory {directory} does not exist: pass the Bio_ClinicalBERT folder "
            f"holding {VOCAB_FILE_NAME}"
        )
    vocab = directory / VOCAB_FILE_NAME
    if not vocab.is_file():
        raise CheckpointError(
            f"tokenizer directory {directory} has no {VOCAB_FILE_NAME}: copy Bio_ClinicalBERT's "
            f"{VOCAB_FILE_NAME} (28,996 lines) there"
        )
    tokens = [line.strip() for line in vocab.read_text(encoding="utf-8", errors="replace").splitlines()]
    missing = [token for token in ("[UNK]", "[CLS]", "[SEP]") if token not in tokens]
    if missing:
        what = "is empty" if not any(tokens) else f"lacks the special token(s) {', '.join(missing)}"
        raise CheckpointError(
            f"{vocab} {what}: it is not a BERT WordPiece vocabulary; copy Bio_ClinicalBERT's "
            f"{VOCAB_FILE_NAME} (28,996 lines, starting with [PAD]) there"
        )
    return BertTokenizer(
        vocab=str(vocab),
        do_lower_case=_lower_case_setting(directory),
        model_max_length=MODEL_MAX_LENGTH,
    )


def tokenizer_fingerprint(directory: str | Path) -> str:
    """sha256 of what decides the token ids: vocab.txt and (if present) tokenizer_config.json.
    Part of the text-embedding cache key, so a changed vocabulary never reuses old embeddings."""
    directory = Path(directory).expanduser()
    digest = hashlib.sha256()
    for name in (VOCAB_FILE_NAME, TOKENIZER_CONFIG_NAME):
        path = directory / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()


def build_wordpiece_vocab(texts: list[str], vocab_size: int) -> list[str]:
    """A lower-cased WordPiece vocab for `texts`: specials, characters, then frequent words.

    Written by hand instead of with tokenizers' WordPieceTrainer because the trainer breaks
    ties between equally frequent merges differently from run to run, and the test-size
    checkpoint must be reproducible from (config, texts, seed). Characters come first (each
    also as a '##' continuation) so every word can be spelled; then whole words by frequency,
    ties broken alphabetically, until vocab_size.
    """
    if not texts:
        raise ValueError("build_wordpiece_vocab needs at least one text")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    word_counts: Counter[str] = Counter()
    for text in texts:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        word_counts.update(word for word, _ in words)
    char_counts: Counter[str] = Counter()
    for word, count in word_counts.items():
        for char in word:
            char_counts[char] += count
    by_frequency = sorted(char_counts, key=lambda char: (-char_counts[char], char))
    room_for_chars = max((vocab_size - len(SPECIAL_TOKENS)) // 2, 0)
    chars = sorted(by_frequency[:room_for_chars])
    vocab = SPECIAL_TOKENS + chars + ["##" + char for char in chars]
    known = set(vocab)
    for word in sorted(word_counts, key=lambda word: (-word_counts[word], word)):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
            known.add(word)
    return vocab[:vocab_size]


def write_vocab(tokens: list[str], directory: Path) -> Path:
    path = Path(directory) / VOCAB_FILE_NAME
    write_text_atomic(path, "".join(token + "\n" for token in tokens))
    return path
