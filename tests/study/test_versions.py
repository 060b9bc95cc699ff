"""A result names the commit that made it (and whether the tree was dirty), and the libraries."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import medguna
from medguna import versions

REPO = Path(__file__).resolve().parents[2]


def test_the_commit_and_dirty_flag_are_the_repositorys():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout.strip())
    versions.git_state.cache_clear()
    assert versions.git_state() == {"git_commit": head, "git_dirty": dirty}
    assert versions.describe_code() == f"{medguna.__version__}+g{head[:12]}" + (".dirty" if dirty else "")


def test_describe_code_without_git_and_with_a_dirty_tree():
    assert versions.describe_code({"git_commit": "", "git_dirty": None}) == medguna.__version__
    state = {"git_commit": "0123456789abcdef" * 2 + "01234567", "git_dirty": True}
    assert versions.describe_code(state) == f"{medguna.__version__}+g0123456789ab.dirty"


def test_a_trial_reports_the_drivers_version_when_handed_one(monkeypatch):
    monkeypatch.setenv(versions.CODE_VERSION_ENV, "0.1.0+gfeedfacecafe")
    assert versions.code_version() == "0.1.0+gfeedfacecafe"
    libs = versions.library_versions()
    import torch

    assert libs["torch_version"] == torch.__version__ and libs["ray_version"].startswith("2.")
    assert set(libs) >= {"cuda_version", "transformers_version", "gpu_model"}
    # Rows go into trial checkpoints, which load with weights_only=True: plain types only.
    assert all(type(v) is str for v in libs.values())
    buffer = io.BytesIO()
    torch.save({"history": [libs]}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["history"][0] == libs
