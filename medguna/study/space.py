"""Search spaces as data: the YAML `search.space` mapping, turned into Optuna suggestions.

Tune's own sampling primitives cannot express Optuna's define-by-run spaces, and OmegaConf cannot
hold Tune objects, so the space stays plain data until the moment Optuna asks for a trial.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna

from medguna.config import MethodConfig, method_field_names, to_dict

# The paper's setting of the searched dimensions (docs/method.md §3-4): enqueued as every study's first trial.
PAPER_DESIGN_POINT: dict[str, Any] = {
    "adapter_width": 0,
    "entropy_weight": 1.5,
    "prompt_length": 113,
    # The reference's composition (sentences + templates); its own LLM sentences are not shipped.
    "description_source": "curated+templates",
}
# Stage-2 dimensions a wider space may search, at the paper's values (SGD, lr 5e-4, its views). A
# configuration that does not name them runs them at these values, so it still counts as the paper's.
PAPER_STAGE2_POINT: dict[str, Any] = {
    "stage2_lr": 5e-4,
    "stage2_optimizer": "sgd",
    "strong_view_augmentation": "reference",
}
PAPER_POINT_VALUES: dict[str, Any] = {**PAPER_DESIGN_POINT, **PAPER_STAGE2_POINT}


def distribution(spec: dict[str, Any]) -> optuna.distributions.BaseDistribution:
    kind = spec["type"]
    if kind == "categorical":
        return optuna.distributions.CategoricalDistribution(list(spec["choices"]))
    if kind == "int":
        return optuna.distributions.IntDistribution(int(spec["low"]), int(spec["high"]),
                                                    step=int(spec.get("step", 1)))
    if kind == "log":
        return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=True)
    step = spec.get("step")
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]),
                                                  step=float(step) if step is not None else None)


def distributions(space: dict[str, dict]) -> dict[str, optuna.distributions.BaseDistribution]:
    return {name: distribution(spec) for name, spec in space.items()}


def fixed_params(method: MethodConfig, space: dict[str, dict], **extra: Any) -> dict[str, Any]:
    """Every method hyperparameter the space does not search, under its own name, plus `extra`."""
    values = to_dict(method)
    return {**{k: values[k] for k in method_field_names() if k not in space}, **extra}


class DefineByRun:
    """The define-by-run function OptunaSearch calls; its return value is merged into the config.

    A class, not a closure: Tune pickles the searcher into its experiment state for resume.
    """

    def __init__(self, space: dict[str, dict], constants: dict[str, Any]) -> None:
        self.space = space
        self.constants = constants

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for name, spec in self.space.items():
            kind = spec["type"]
            if kind == "categorical":
                trial.suggest_categorical(name, list(spec["choices"]))
            elif kind == "int":
                trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
            else:
                step = spec.get("step")
                trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=kind == "log",
                                    step=float(step) if step is not None else None)
        return dict(self.constants)


def inside_space(space: dict[str, dict], point: dict[str, Any]) -> bool:
    """Whether `point` gives every dimension of `space` a value its distribution contains."""
    for name, dist in distributions(space).items():
        try:
            if not dist._contains(dist.to_internal_repr(point[name])):
                return False
        except (KeyError, ValueError, TypeError):
            return False
    return True


def define_by_run(space: dict[str, dict], constants: dict[str, Any]) -> Callable[[optuna.Trial], dict]:
    return DefineByRun(space, constants)


def paper_point(space: dict[str, dict]) -> dict[str, Any] | None:
    """The paper's values of the searched dimensions, or None if the space cannot express them."""
    if not set(space) <= set(PAPER_POINT_VALUES):
        return None  # the space searches something the paper point does not pin
    point = {name: PAPER_POINT_VALUES[name] for name in space}
    return point if inside_space(space, point) else None


def is_paper_point(params: dict[str, Any], fixed: dict[str, Any] | None = None) -> bool:
    """Whether `params` run the paper's hyperparameters (in medguna's pipeline, any variant).

    fixed: the study's own method values. Stage 2's optimiser, learning rate and strong view are
    the paper's point only where a study searches them; where its budget fixes them for every trial
    (the demonstration's AdamW), the trial at the paper's design point is still the paper's point."""
    def stage2_matches(key: str, paper: Any) -> bool:
        value = params.get(key, paper)
        return value == paper or (fixed is not None and key in fixed and value == fixed[key])

    return (all(params.get(k) == v for k, v in PAPER_DESIGN_POINT.items())
            and all(stage2_matches(k, v) for k, v in PAPER_STAGE2_POINT.items()))


def best_distinct(ranked: list[tuple[float, dict[str, Any]]], top: int,
                  accept: Callable[[dict[str, Any]], bool] | None = None) -> tuple[list[dict[str, Any]], int]:
    """The `top` best distinct configurations of (objective, configuration) pairs (maximised; ties
    keep their given order), and how many distinct ones `accept` refused on the way."""
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    refused = 0
    for _, configuration in sorted(ranked, key=lambda item: -item[0]):
        key = json.dumps(configuration, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        if accept is not None and not accept(configuration):
            refused += 1
            continue
        chosen.append(configuration)
        if len(chosen) == top:
            break
    return chosen, refused
