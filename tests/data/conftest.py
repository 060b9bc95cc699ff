"""Shared fixtures: one synthetic copy of each dataset per test session (read-only by convention)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medguna.data.synthetic import synthesize

DATASET_NAMES = ("shenzhen", "montgomery", "guangzhou", "idrid", "isic2018")


@pytest.fixture(scope="session")
def synthetic_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each dataset synthesised once; tests that change files copy it first (see `copy_of`)."""
    base = tmp_path_factory.mktemp("synthetic")
    return {name: synthesize(name, base / name, seed=0) for name in DATASET_NAMES}


@pytest.fixture
def copy_of(synthetic_roots: dict[str, Path], tmp_path: Path):
    """Return a private, writable copy of a synthetic dataset."""

    def make(name: str) -> Path:
        target = tmp_path / f"{name}_copy"
        shutil.copytree(synthetic_roots[name], target)
        return target

    return make
