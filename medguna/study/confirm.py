"""Confirmation stage: rerun a finished experiment's best configurations with fresh seeds.

A search ranks configurations by one run each, all with the same `method.seed`; a winner by a point
may be seed luck. Per dataset, the K best distinct configurations of the search (by the objective
Tune ranked them with, completed trials only) each run again with N seeds
`method.seed + 1 ... method.seed + N`, as a second Ray Tune experiment `<dataset>_confirm/` in the
study folder, on the same cluster. The analysis reads it as the "confirmed leaderboard" (mean and
interval over seeds) and the seeds table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from medguna.config import method_field_names

CONFIRM_SUFFIX = "_confirm"
COMPLETED = "completed"


@dataclass(frozen=True)
class ConfirmPlan:
    top: int  # K configurations per dataset
    seeds: list[int]  # the N fresh seeds each of them runs with


def confirm_plan(top: int, num_seeds: int, base_seed: int) -> ConfirmPlan | None:
    """None when the study asks for no confirmation (K or N is 0)."""
    if top <= 0 or num_seeds <= 0:
        return None
    return ConfirmPlan(top, [base_seed + i for i in range(1, num_seeds + 1)])


def _configuration(config: dict[str, Any]) -> dict[str, Any]:
    """The method hyperparameters of a trial's config, without its seed."""
    names = set(method_field_names()) - {"seed"}
    return {k: v for k, v in config.items() if k in names}


def best_configurations(results: list[tuple[dict, dict]], top: int, metric: str) -> list[dict[str, Any]]:
    """The `top` best distinct configurations among (metrics, config) of completed trials."""
    ranked = []
    for metrics, config in results:
        value = (metrics or {}).get(metric)
        if (metrics or {}).get("status") != COMPLETED or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            continue
        ranked.append((float(value), _configuration(config or {})))
    ranked.sort(key=lambda item: -item[0])  # stable: ties keep Tune's trial order
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, configuration in ranked:
        key = json.dumps(configuration, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(configuration)
        if len(chosen) == top:
            break
    return chosen


def confirmation_points(configurations: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """One Tune config per (configuration, seed), configuration-major."""
    return [{**configuration, "seed": seed} for configuration in configurations for seed in seeds]
