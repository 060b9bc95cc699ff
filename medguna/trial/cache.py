"""Content-keyed tensor caches for work shared by many trials (text embeddings, frozen features).

An entry's key is the hash of everything that determines its content, so a changed description,
image, split, preprocessing or checkpoint misses instead of reusing a stale entry. Entries are
safetensors files written to a temporary name and renamed into place, so trials filling the same
entry at once never leave a torn file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def content_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cached_tensors(
    cache_dir: str | os.PathLike | None,
    kind: str,
    key: str,
    compute: Callable[[], dict[str, torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], bool]:
    """Load entry `kind/key` or compute and store it. Returns (tensors, was_hit).

    `cache_dir=None` turns caching off (the computation runs every time).
    """
    if cache_dir is None:
        return compute(), False
    path = Path(cache_dir) / kind / f"{key}.safetensors"
    if path.is_file():
        with contextlib.suppress(SafetensorError, OSError, ValueError):  # a torn or foreign file: recompute
            return load_file(path), True
    tensors = {name: t.detach().contiguous().cpu() for name, t in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return tensors, False
