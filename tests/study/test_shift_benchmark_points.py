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
    # Named dimensions as given; the rest at the corrected variant's defaults (the learning rate at
    # the demonstration budget's 1e-3).
    assert point == {"adapter_width": 0, "entropy_weight": 0.0, "prompt_length": 0,
                     "description_source": "curated+templates", "stage2_optimizer": "adamw",
                     "stage2_lr": 0.001, "strong_view_augmentation": "reference"}
    assert inside_space(wide.search.space, point)
    with pytest.raises(SystemExit, match="not a point of the wide space"):
        bench.warm_point_in(wide.search.space, apply_method_params(method, {"prompt_length": 16}))  # not a choice


def _entropy_rows(bench, gains: dict[float, list[float]]):
    import polars as pl

    return pl.DataFrame([{"dataset": f"d{i // 2}", "seed": i % 2, "arm": bench.entropy_arm(w), "gain": g}
                         for w, values in gains.items() for i, g in enumerate(values)])


def test_entropy_decision_needs_an_interval_above_zero_against_weight_0(bench):
    # Paired differences of +1.5 to 0: 0.1, 0.2, 0.1, 0.2 -> mean 0.15, sd 0.0577, t(3) 3.182:
    # interval 0.15 +- 0.0919 = [0.058, 0.242], above zero, so +1.5 becomes the default.
    rows = _entropy_rows(bench, {1.5: [0.1, 0.2, 0.1, 0.2], 0.0: [0.0] * 4, -1.5: [0.05, -0.05, 0.0, 0.0]})
    text = bench.entropy_comparison(rows, (1.5, 0.0, -1.5))
    assert "| +1.5 | +0.150 | +0.150 [+0.058, +0.242] | 4 |" in text
    assert text.endswith("Outcome: +1.5.")


def test_entropy_decision_falls_back_to_0_when_the_best_weight_is_not_clearly_better(bench):
    # -1.5 has the highest mean (+0.05) but its differences 0.3, -0.2, 0.1, 0.0 give an interval
    # that includes zero: the rule keeps 0, the neutral choice.
    rows = _entropy_rows(bench, {1.5: [-0.1] * 4, 0.0: [0.0] * 4, -1.5: [0.3, -0.2, 0.1, 0.0]})
    text = bench.entropy_comparison(rows, (1.5, 0.0, -1.5))
    assert "Highest mean gain: entropy weight -1.5." in text and text.endswith("Outcome: 0.")
    assert bench.entropy_comparison(rows, (1.5, -1.5)) == ""  # no weight 0 to compare with
