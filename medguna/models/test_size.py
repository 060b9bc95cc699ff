"""A tiny, seeded MedCLIP-ViT saved in the official checkpoint format, so tests (and runs
without the real weights) go through the real loading path in seconds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from medguna.errors import ConfigError
from medguna.models.checkpoint import BIN_NAME, save_released_format
from medguna.models.medclip import build_medclip
from medguna.models.medclip_config import CONFIG_FILE_NAME, test_size_config
from medguna.models.tokenizer import VOCAB_FILE_NAME, build_wordpiece_vocab, write_vocab

# Bump when the saved content for the same (config, texts, seed) changes meaning.
_FORMAT_VERSION = 1


def test_size_key(texts: list[str], seed: int) -> str:
    """Hash of everything that determines the test-size checkpoint's bytes."""
    payload = json.dumps(
        {
            "format": _FORMAT_VERSION,
            "config": test_size_config().to_dict(),
            "texts": list(texts),
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _is_complete(directory: Path) -> bool:
    return all(
        (directory / name).is_file() for name in (BIN_NAME, VOCAB_FILE_NAME, CONFIG_FILE_NAME)
    )


def ensure_test_size_checkpoint(cache_dir: str | Path, texts: list[str], seed: int = 0) -> Path:
    """Return the folder of the test-size checkpoint for (texts, seed), creating it if needed.

    The folder holds pytorch_model.bin (release key layout), medguna_medclip_config.json and a
    vocab.txt built from `texts`. It is written to a temporary folder and renamed into place, so
    concurrent callers (e.g. Ray workers) never see a half-written checkpoint.
    """
    if not texts or not all(isinstance(text, str) for text in texts):
        raise ConfigError(
            "ensure_test_size_checkpoint needs a non-empty list of strings (vocab_texts) to build "
            "its vocabulary; pass the descriptions the run will encode"
        )
    cache_dir = Path(cache_dir).expanduser()
    final = cache_dir / f"medclip-test-size-{test_size_key(texts, seed)}"
    if _is_complete(final):
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        config = test_size_config()
        vocab = build_wordpiece_vocab(texts, config.text["vocab_size"])
        save_released_format(build_medclip(config, seed=seed), staging)
        write_vocab(vocab, staging)
        try:
            os.rename(staging, final)
        except OSError:
            if not _is_complete(final):  # not another writer winning the race: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


# Names start with "test_"; keep pytest from collecting them when a test module imports them.
test_size_key.__test__ = False  # type: ignore[attr-defined]
