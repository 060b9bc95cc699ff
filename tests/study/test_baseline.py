"""The baseline arm (search.baseline_reference_variant): the reference variant at the paper's point,
run only where the reference insertion can express the paper's prompt length."""

from __future__ import annotations

from medguna.compose import compose_study
from medguna.config import reference_prompt_lengths
from medguna.study.baseline import baseline_point
from medguna.study.space import PAPER_POINT_VALUES, is_paper_point


def test_the_reference_variant_at_the_paper_point_at_224_pixels(tmp_path):
    study = compose_study([f"storage.path={tmp_path}", "search.baseline_reference_variant=true"])
    assert study.search.baseline_reference_variant is True
    # 224 / 4 = 56 patches a side; 57^2 - 56^2 = 113: the paper's prompt length fills the grid.
    assert 113 in reference_prompt_lengths(224)
    point, note = baseline_point(study.method, 224, "shenzhen")
    assert point is not None and note.startswith("baseline arm")
    assert point["variant"] == "reference" and point["dataset"] == "shenzhen"
    assert {k: point[k] for k in PAPER_POINT_VALUES} == PAPER_POINT_VALUES
    assert point["seed"] == study.method.seed and is_paper_point(point)


def test_not_run_where_the_reference_insertion_cannot_express_it(tmp_path):
    study = compose_study([f"storage.path={tmp_path}"])
    assert study.search.baseline_reference_variant is False  # off unless asked
    assert 113 not in reference_prompt_lengths(96)  # 24 patches a side: 49, 100, 153, ...
    point, note = baseline_point(study.method, 96, "shenzhen")
    assert point is None
    assert "not run" in note and "data.image_size=96" in note and "prompt_length" in note
