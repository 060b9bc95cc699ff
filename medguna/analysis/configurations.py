"""Which hyperparameters a study searched, and a readable key for each configuration."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from medguna.results import DESIGN_DIMENSIONS, NOT_CONFIGURATION


def searched_params(trials: pl.DataFrame, param_names: Sequence[str]) -> list[str]:
    """The design-named parameters, plus every other parameter that varies among `trials`.

    params.json holds sampled and fixed values alike; a parameter with one value in the whole
    results set says nothing about a configuration, so only varying ones join the tuple (a trial
    that failed before Ray wrote its params has none: missing is not another value).
    """
    design = [p for p in DESIGN_DIMENSIONS if p in trials.columns]
    others = [
        p
        for p in param_names
        if p in trials.columns
        and p not in DESIGN_DIMENSIONS
        and p not in NOT_CONFIGURATION
        and trials[p].drop_nulls().n_unique() > 1
    ]
    return design + others


def _value_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def configuration_expr(params: Sequence[str]) -> pl.Expr:
    """`configuration`: "adapter_width=64, prompt_length=16, ..." built from `params`."""
    if not params:
        return pl.lit("(default)").alias("configuration")
    pieces = []
    for i, name in enumerate(params):
        text = pl.col(name).map_elements(_value_text, return_dtype=pl.String).fill_null("None")
        pieces += ([pl.lit(", ")] if i else []) + [pl.lit(f"{name}="), text]
    return pl.concat_str(pieces).alias("configuration")
