"""The sha256 of a whole file, read in chunks: the one fingerprint that checkpoints, caches and a
study's input record share. Imports nothing of medguna."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
