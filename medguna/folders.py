"""Check, before any work starts, that a folder medguna must write to can be written.

A file where a folder is expected, a read-only folder or a parent that is a file would otherwise
surface late: after Ray starts as a raw pyarrow traceback, or as every trial failing on its own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from medguna.errors import ConfigError


def check_writable_folder(path: str | os.PathLike, key: str) -> Path:
    """`path` (created if missing) as an absolute Path, after a real write probe.

    `key` is the configuration key the path came from (storage.path, storage.cache_dir), named in
    the error with the fix. Raises ConfigError.
    """
    folder = Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}={path} is a file, not a folder: point {key} at a folder "
                          "(it is created if missing), or move the file away")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A real write, not os.access: access() says yes to root on a read-only mount.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medguna-write-check-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{key}={path} cannot be written ({reason}: {err.filename or folder}): "
                          f"point {key} at a folder you can write to, or fix its permissions") from None
    return folder
