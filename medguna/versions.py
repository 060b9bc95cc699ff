"""What code and which libraries produced a result: the git commit (and whether the tree had
uncommitted changes), torch, CUDA, transformers, Ray, Optuna, accelerate, and the GPU model.

The commit is read where the study starts (the repository with its .git), and handed to every trial
through MEDGUNA_CODE_VERSION: cluster nodes get the code synced without .git (cluster.yaml's
rsync_exclude), so a trial could not read it there itself.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

import medguna

CODE_VERSION_ENV = "MEDGUNA_CODE_VERSION"
_SOURCE_DIR = Path(medguna.__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_SOURCE_DIR), *args], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_state() -> dict[str, Any]:
    """{"git_commit": full sha or "", "git_dirty": bool or None} of the source tree medguna runs from."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {"git_commit": "", "git_dirty": None}
    # Tracked files changed or staged; untracked files (results, caches) do not change the code.
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def describe_code(state: dict[str, Any] | None = None) -> str:
    """`<package version>+g<12-char commit>[.dirty]`, or the package version alone without git."""
    state = git_state() if state is None else state
    if not state["git_commit"]:
        return medguna.__version__
    return f"{medguna.__version__}+g{state['git_commit'][:12]}" + (".dirty" if state["git_dirty"] else "")


def code_version() -> str:
    """The study driver's code version where it handed one down, else this process's own."""
    return os.environ.get(CODE_VERSION_ENV) or describe_code()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def library_versions() -> dict[str, str]:
    """The versions that change numbers or behaviour, and the GPU this process sees ("" if none)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {
        # str(): torch.__version__ is a TorchVersion, which torch.load(weights_only=True) refuses in a
        # checkpoint's history rows.
        "torch_version": str(torch.__version__), "cuda_version": str(torch.version.cuda or ""),
        "transformers_version": _version("transformers"), "ray_version": _version("ray"),
        "optuna_version": _version("optuna"), "accelerate_version": _version("accelerate"),
        "gpu_model": gpu,
    }
