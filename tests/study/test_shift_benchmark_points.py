"""The shift benchmark's fixed-in-advance configuration (--warm-point) as the wide study sees it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medguna.compose import compose_study
from medguna.config import apply_method_params
from medguna.study.space import inside_space


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).parents[2] / "benchmarks" / "shift_benchmark.py"
    spec = importlib.util.spec_from_file_location("shift_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_warm_point_text_reads_numbers_as_numbers(bench):
    params = bench.parse_warm_point("prompt_length=0, stage2_lr=2e-3,strong_view_augmentation=crop_flip")
    assert params == {"prompt_length": 0, "stage2_lr": 0.002, "strong_view_augmentation": "crop_flip"}
    assert isinstance(params["prompt_length"], int) and bench.parse_warm_point(None) == {}
    with pytest.raises(SystemExit, match="not name=value"):
        bench.parse_warm_point("prompt_length")


def test_warm_point_fills_the_wide_space_from_the_method_and_refuses_what_it_cannot_hold(bench):
    wide = compose_study(["search=wide"])
    method = apply_method_params(wide.method, wide.study.demo_method)
    warm = apply_method_params(method, {"prompt_length": 0, "stage2_optimizer": "adamw"})
    point = bench.warm_point_in(wide.search.space, warm)
    # Named dimensions as given; the rest at the corrected variant's defaults.
    assert point == {"adapter_width": 0, "entropy_weight": -1.5, "prompt_length": 0,
                     "description_source": "curated+templates", "stage2_optimizer": "adamw",
                     "stage2_lr": 0.0005, "strong_view_augmentation": "reference"}
    assert inside_space(wide.search.space, point)
    with pytest.raises(SystemExit, match="not a point of the wide space"):
        bench.warm_point_in(wide.search.space, apply_method_params(method, {"prompt_length": 16}))  # not a choice
