"""Warm start: enqueue another finished study's best configurations before the sampler's own.

`search.warm_start=<storage>/<study>` gives each dataset the best `search.warm_start_top`
configurations of the same dataset in that study; `<storage>/<study>:<dataset>` gives every
dataset that one dataset's best (e.g. Montgomery starts from Shenzhen's). Read from the trial
folders (params.json, the final row of result.json), checked before Ray starts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medguna.errors import ConfigError
from medguna.results import (
    OBJECTIVE_SELECTED,
    PARAMS_FILE,
    RESULT_FILE,
    STUDY_FILE,
    is_final_row,
    upgrade_row,
)
from medguna.study.space import inside_space


def parse_source(source: str) -> tuple[Path, str | None]:
    """`PATH` or `PATH:DATASET` -> (study folder, dataset or None), checked to exist."""
    path, _, dataset = source.rpartition(":") if ":" in Path(source).name else (source, "", "")
    folder = Path(path).expanduser()
    if not (folder / STUDY_FILE).is_file():
        raise ConfigError(f"search.warm_start={source!r}: {folder} is not a finished study folder "
                          "(no study.json); name <storage.path>/<study>, optionally :<dataset>")
    if dataset and not (folder / dataset).is_dir():
        raise ConfigError(f"search.warm_start={source!r}: {folder} has no experiment for dataset "
                          f"{dataset!r}; the study's datasets are folders of {folder}")
    return folder, dataset or None


def _final_row(result_file: Path) -> dict[str, Any] | None:
    if not result_file.is_file():
        return None
    lines = [line for line in result_file.read_text(errors="replace").splitlines() if line.strip()]
    try:
        row = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None  # a torn last line: the trial did not finish cleanly
    if not isinstance(row, dict):
        return None
    row = upgrade_row(row)
    return row if is_final_row(row) else None


def warm_points(source: str, dataset: str, space: dict[str, dict], top: int) -> tuple[list[dict], str]:
    """The best `top` distinct completed configurations, as points of `space`, and a log line.

    Configurations outside the current space (a value no longer searched) are left out and counted.
    """
    folder, source_dataset = parse_source(source)
    experiment = folder / (source_dataset or dataset)
    ranked = []
    for trial in sorted(experiment.glob("t*_*")) if experiment.is_dir() else []:
        final = _final_row(trial / RESULT_FILE)
        params_file = trial / PARAMS_FILE
        value = (final or {}).get(OBJECTIVE_SELECTED)
        if not params_file.is_file() or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        params = json.loads(params_file.read_text())
        ranked.append((float(value), {k: params.get(k) for k in space}))
    ranked.sort(key=lambda item: -item[0])
    points, outside, seen = [], 0, set()
    for _, point in ranked:
        key = json.dumps(point, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        if not inside_space(space, point):
            outside += 1
            continue
        points.append(point)
        if len(points) == top:
            break
    note = (f"warm start from {experiment}: {len(points)} configuration(s) enqueued"
            + (f", {outside} outside this study's search space left out" if outside else ""))
    return points, note


def enqueue_order(reference: dict | None, warm: list[dict]) -> list[dict] | None:
    """The paper's point first, then the warm-start points not equal to it; None when empty."""
    points = [reference] if reference else []
    points += [p for p in warm if p != reference]
    return points or None

