"""Write-then-rename for every local file a later run reads (study.json, markers, split files, ...).

A reader never sees half a file: the bytes go to a temporary file in the same folder, are flushed,
and `os.replace` publishes them in one step, so a kill mid-write leaves the old file or the new one.
This module imports nothing of medguna, so every floor can use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Publish `data` at `path` atomically (creating its folder); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Publish UTF-8 `text` at `path` atomically; newlines are written as given."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> Path:
    """Publish `value` as JSON at `path` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=indent) + "\n")
