"""A study whose storage path is a URI goes end to end through pyarrow's filesystem layer, the same
code an s3:// study runs: trials, study.json, the report (read from a local mirror, copied back into
the store) and --fresh. `file://` is the bucket stand-in that needs no network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "studies"))
import run as study_command


def _trial_ids(exp: Path) -> set[str]:
    return {p.name for p in exp.iterdir() if p.is_dir() and p.name.startswith("t0")}


def test_a_file_uri_study_runs_reports_and_starts_fresh(tmp_path, shared_cache, local_ray, capsys):
    store = tmp_path / "bucket"
    args = ["--study", "chestxray", *tiny_overrides(tmp_path, shared_cache), f"storage.path=file://{store}",
            "study.datasets=[montgomery]", "study.demo_num_samples=1"]
    assert study_command.main(args) == 0
    out = capsys.readouterr().out
    study = store / "chestxray"
    exp = study / "montgomery"
    first = _trial_ids(exp)
    assert len(first) == 1 and (exp / "medguna_complete.json").is_file() and (exp / "optuna.db").is_file()
    assert json.loads((study / "study.json").read_text())["study"] == "chestxray"
    # The report was built from a local mirror and copied into the store next to the results.
    assert (study / "analysis" / "index.md").is_file()
    assert (study / "analysis" / "leaderboard_montgomery.csv").is_file()
    mirror = shared_cache / "study_mirrors" / "chestxray"
    assert (mirror / "montgomery" / min(first) / "result.json").is_file()
    assert not list(mirror.rglob("checkpoint_*")), "checkpoints are not mirrored for the report"
    assert "montgomery" in out and f"copied to file://{study}/analysis" in out

    assert study_command.main(["--fresh", *args]) == 0
    out = capsys.readouterr().out
    assert f"--fresh: removed the earlier results in file://{study}" in out
    second = _trial_ids(exp)
    assert len(second) == 1 and not second & first  # new trials, none kept from the first run
