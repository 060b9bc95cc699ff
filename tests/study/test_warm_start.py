"""Warm start: another finished study's best configurations, read before Ray and enqueued first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medguna.compose import compose_study
from medguna.errors import ConfigError
from medguna.study.runner import plan_study
from medguna.study.warm_start import enqueue_order, warm_points

SPACE = {"adapter_width": {"type": "categorical", "choices": [0, 64, 256]},
         "entropy_weight": {"type": "float", "low": 0.0, "high": 3.0}}
# The other dimensions of studies/conf/search/default.yaml, at values it searches.
OTHERS = {"prompt_length": 8, "description_source": "curated"}


def _trial(exp: Path, number: int, width: int, weight: float, value: float | None, seed: int = 7777) -> None:
    folder = exp / f"t{number:04d}_abc_{number:05d}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(
        {"adapter_width": width, "entropy_weight": weight, **OTHERS, "seed": seed, "dataset": exp.name}))
    rows = [{"epoch": 1, "objective_best_so_far": 0.99}]  # an epoch row: never ranked on its own
    if value is not None:
        rows.append({"epoch": 2, "status": "completed", "objective_selected": value})
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def finished_study(tmp_path: Path) -> Path:
    study = tmp_path / "runs" / "earlier"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"study": "earlier", "datasets": ["shenzhen"]}))
    exp = study / "shenzhen"
    _trial(exp, 0, 0, 1.5, 0.70)
    _trial(exp, 1, 64, 0.5, 0.80)
    _trial(exp, 2, 64, 0.5, 0.78, seed=7778)  # the same configuration again
    _trial(exp, 3, 512, 1.0, 0.95)  # width 512 is not searched any more
    _trial(exp, 4, 256, 2.0, None)  # stopped early: no final row
    _trial(exp, 5, 256, 2.5, 0.60)
    return study


def test_best_distinct_configurations_inside_the_space(finished_study):
    points, note = warm_points(f"{finished_study}:shenzhen", "montgomery", SPACE, top=3)
    assert points == [{"adapter_width": 64, "entropy_weight": 0.5},
                      {"adapter_width": 0, "entropy_weight": 1.5},
                      {"adapter_width": 256, "entropy_weight": 2.5}]
    assert "3 configuration(s) enqueued, 1 outside this study's search space left out" in note
    reference = {"adapter_width": 0, "entropy_weight": 1.5}
    assert enqueue_order(reference, points) == [reference, points[0], points[2]]
    assert enqueue_order(None, []) is None


def test_plan_reads_warm_start_before_ray(finished_study, tmp_path, no_ray):
    base = [f"storage.path={tmp_path / 'runs'}", "study.datasets=[shenzhen,montgomery]",
            "search.warm_start_top=1"]
    plan = plan_study(compose_study([*base, f"search.warm_start={finished_study}:shenzhen"]))
    best = {"adapter_width": 64, "entropy_weight": 0.5, **OTHERS}  # every searched dimension
    assert set(best) == set(plan.config.search.space)
    assert [p.warm_points for p in plan.datasets] == [[best], [best]]
    # Without :dataset each dataset reads its own experiment; montgomery has none there.
    plan = plan_study(compose_study([*base, f"search.warm_start={finished_study}"]))
    assert plan.datasets[0].warm_points and plan.datasets[1].warm_points == []
    with pytest.raises(ConfigError, match="not a finished study folder"):
        plan_study(compose_study([*base, f"search.warm_start={tmp_path / 'nothing'}"]))
    with pytest.raises(ConfigError, match="no experiment for dataset 'idrid'"):
        plan_study(compose_study([*base, f"search.warm_start={finished_study}:idrid"]))
