"""A study whose storage path is a URI goes end to end through pyarrow's filesystem layer, the same
code an s3:// study runs: trials, study.json, the report (read from a local mirror, copied back into
the store), extension by more samples, and --fresh. `file://` is the bucket stand-in that needs no
network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
from conftest import tiny_overrides

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "studies"))
import run as study_command  # studies/run.py, the command users type


def _trials(exp: Path) -> dict[str, bytes]:
    # Contents, not times: Tune copies the experiment folder to the storage path again when it ends.
    return {p.name: (p / "result.json").read_bytes() for p in exp.iterdir() if p.name.startswith("t0")}


def test_a_file_uri_study_runs_reports_extends_and_starts_fresh(tmp_path, shared_cache, local_ray, capsys):
    store = tmp_path / "bucket"
    args = ["--study", "chestxray", *tiny_overrides(tmp_path, shared_cache), f"storage.path=file://{store}",
            "study.datasets=[montgomery]"]
    assert study_command.main([*args, "study.demo_num_samples=1"]) == 0
    out = capsys.readouterr().out
    study = store / "chestxray"
    exp = study / "montgomery"
    first = _trials(exp)
    assert len(first) == 1 and (exp / "medguna_complete.json").is_file()
    assert json.loads((study / "study.json").read_text())["study"] == "chestxray"
    # The report was built from a local mirror and copied into the store next to the results.
    assert (study / "analysis" / "index.md").is_file()
    assert (study / "analysis" / "leaderboard_montgomery.csv").is_file()
    mirror = shared_cache / "study_mirrors" / "chestxray"
    assert (mirror / "montgomery" / min(first) / "result.json").is_file()
    assert not list(mirror.rglob("checkpoint_*")), "checkpoints are not mirrored for the report"
    assert "montgomery" in out and f"copied to file://{study}/analysis" in out

    # More samples: exactly the new trial runs, the kept one is not rerun, Optuna holds both.
    assert study_command.main(["--no-report", *args, "study.demo_num_samples=2"]) == 0
    assert "extending from 1 to 2 trials" in capsys.readouterr().out
    after = _trials(exp)
    assert len(after) == 2 and {k: after[k] for k in first} == first
    (new,) = set(after) - set(first)
    assert new.startswith("t0002_")  # the searcher's numbering goes on
    assert json.loads((exp / "medguna_complete.json").read_text())["num_samples"] == 2
    trials = optuna.load_study(study_name="chestxray-montgomery", storage=f"sqlite:///{exp / 'optuna.db'}").trials
    assert [t.user_attrs["outcome"] for t in trials] == ["completed", "completed"]

    assert study_command.main(["--fresh", "--no-report", *args, "study.demo_num_samples=1"]) == 0
    assert f"--fresh: removed the earlier results in file://{study}" in capsys.readouterr().out
    fresh = _trials(exp)
    assert len(fresh) == 1 and not set(fresh) & set(after)  # a new trial, none kept from before
