"""Content-keyed tensor caches for work shared by many trials (text embeddings, frozen features).

An entry's key is the hash of everything that determines its content, so a changed description,
image, split, preprocessing or checkpoint misses instead of reusing a stale entry. Entries are
safetensors files written to a temporary name and renamed into place, so trials filling the same
entry at once never leave a torn file.

Each entry also carries, in its safetensors metadata, the key material it was built from and a
checksum of its tensors, checked on every read: an entry changed on disk, written under another
key, holding other tensors or non-finite values is rebuilt (and said so once), never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from medguna.data.rebuilds import note_rebuild

_REPORTED: set[tuple] = set()  # bad entry versions already reported by this process


def content_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load_verified(path: Path, key: str, names: Collection[str] | None
                   ) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The entry's tensors if it passes every check, else (None, what is wrong)."""
    try:
        with safe_open(str(path), framework="pt") as entry:
            metadata = entry.metadata() or {}
            tensors = {name: entry.get_tensor(name) for name in entry.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        return None, f"unreadable ({type(err).__name__})"  # torn: a crash mid-write, a full disk
    if metadata.get("key") != key:
        return None, "written under another key (no key material, or a foreign file)"
    if names is not None and set(tensors) != set(names):
        return None, f"holding tensors {sorted(tensors)} instead of {sorted(names)}"
    if metadata.get("checksum") != tensors_checksum(tensors):
        return None, "its tensors do not match their checksum (changed on disk)"
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return None, f"tensor {name!r} holds NaN or infinite values"
    return tensors, ""


def _report_rebuild(path: Path, reason: str) -> None:
    try:
        stat = path.stat()
        seen = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except OSError:
        seen = (str(path),)
    if seen not in _REPORTED:  # once per bad version of the file, however many trials meet it
        _REPORTED.add(seen)
        note_rebuild(path.parent, f"cache entry {path} is {reason}: rebuilding it")


def cached_tensors(
    cache_dir: str | os.PathLike | None,
    kind: str,
    key: str,
    compute: Callable[[], dict[str, torch.Tensor]],
    *,
    material: dict[str, Any] | None = None,
    names: Collection[str] | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Load entry `kind/key` or compute and store it. Returns (tensors, was_hit).

    `material` is what `key` was computed from (content_key's parts), stored in the entry so it
    says what it holds; `names`, the tensor names `compute` returns, checked on read. `cache_dir=None` turns caching off (the computation runs every time).
    """
    if cache_dir is None:
        return compute(), False
    path = Path(cache_dir) / kind / f"{key}.safetensors"
    if path.is_file():
        tensors, problem = _load_verified(path, key, names)
        if tensors is not None:
            return tensors, True
        _report_rebuild(path, problem)
    tensors = {name: t.detach().contiguous().cpu() for name, t in compute().items()}
    metadata = {"key": key, "checksum": tensors_checksum(tensors),
                "material": json.dumps(material or {}, sort_keys=True, default=str)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return tensors, False
