"""`--fresh`: delete a study's earlier results, and nothing outside its own folder.

The study folder is storage.path/<study.name>. The name is validated with the config, and the
folder is checked again here, right before deleting, because a deletion cannot be undone: it must
be a real directory (not a symlink to somewhere else) whose parent is the storage directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medguna.errors import ConfigError
from medguna.study_config import validate_study_name


def study_folder(storage: str, name: str) -> Path:
    """storage/<name>, refusing any name or layout that would resolve outside the storage path."""
    validate_study_name(name)
    root = Path(os.path.realpath(storage))
    folder = Path(storage) / name
    if folder.is_symlink():
        raise ConfigError(
            f"the study folder {folder} is a symlink (to {os.path.realpath(folder)}); --fresh deletes "
            "only a study's own folder: remove the link yourself or choose another study.name"
        )
    if Path(os.path.realpath(folder)).parent != root:
        raise ConfigError(f"the study folder {folder} is not directly inside storage.path={storage}; "
                          "--fresh refuses to delete it")
    return folder


def clear_study_folder(storage: str, name: str, *, keep: tuple[str, ...] = ()) -> list[str]:
    """Delete everything in storage/<name> except the entries named in `keep` (the study lock).
    Returns the names deleted."""
    folder = study_folder(storage, name)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()  # a file, or a link: remove the link, never what it points to
        removed.append(entry.name)
    return removed
