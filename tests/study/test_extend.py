"""Raising study.demo_num_samples on a finished study runs exactly the new trials: the old ones are
kept untouched and Optuna's history holds them all."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from conftest import tiny_overrides

from medguna.compose import compose_study
from medguna.study.runner import COMPLETE_MARKER, run_study

pytestmark = pytest.mark.slow


def _trials(exp: Path) -> dict[str, bytes]:
    # Contents, not times: Tune copies the experiment folder to the storage path again when it ends.
    return {p.name: (p / "result.json").read_bytes() for p in exp.iterdir() if p.name.startswith("t0")}


def test_more_samples_extend_a_finished_study(tmp_path, shared_cache, local_ray):
    def run(samples: int) -> str:
        cfg = compose_study(["study=chestxray", "study.datasets=[montgomery]", f"study.demo_num_samples={samples}",
                             *tiny_overrides(tmp_path, shared_cache)])
        lines: list[str] = []
        run_study(cfg, log=lines.append)
        return "\n".join(lines)

    run(1)
    exp = tmp_path / "runs" / "chestxray" / "montgomery"
    first = _trials(exp)
    log = run(2)
    assert "extending from 1 to 2 trials" in log
    after = _trials(exp)
    assert len(after) == 2 and {k: after[k] for k in first} == first  # the kept trial not rerun
    (new,) = set(after) - set(first)
    assert new.startswith("t0002_")  # the searcher's numbering goes on
    assert json.loads((exp / COMPLETE_MARKER).read_text())["num_samples"] == 2
    study = optuna.load_study(study_name="chestxray-montgomery", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 2 and {t.user_attrs["budget"] for t in study.trials} == {"full"}
    assert "already complete" in run(2)
