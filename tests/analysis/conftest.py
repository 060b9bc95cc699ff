"""Shared fixtures: the hand-made study (written once per session; tests only read it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_fixtures import write_hand_study

from medguna.analysis.loading import ResultSet, load_results


@pytest.fixture(scope="session")
def hand_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hand_study(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def hand_results(hand_study: Path) -> ResultSet:
    return load_results(hand_study, progress=False)
