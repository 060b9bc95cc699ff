"""Cohorts: real-data results kept apart from synthetic-data, demonstration- and test-size-model results.

A cohort is the pair (data source, model). Every table and plot is computed within one cohort and
carries its label, so a synthetic, demonstration-encoder or test-size number can never pass for a
real (MedCLIP) result.
"""

from __future__ import annotations

import polars as pl

from medguna.config import DEMO_CHECKPOINT, TEST_SIZE_CHECKPOINT

REAL = "real"

# Sort order of cohorts in reports: real results first, then the stand-ins.
_ORDER = ("real", "real-demo", "real-testsize", "synthetic", "synthetic-demo", "synthetic-testsize")
# Stand-in models, by the checkpoint name result rows record, and the slug suffix they add.
_MODEL_SUFFIX = {DEMO_CHECKPOINT: "-demo", TEST_SIZE_CHECKPOINT: "-testsize"}


def cohort_slug(data_source: str | None, checkpoint: str | None) -> str:
    """A short file-name-safe key, e.g. "real", "synthetic-demo", "synthetic-testsize", "unknown"."""
    source = data_source if data_source in ("real", "synthetic") else "unknown"
    return source + _MODEL_SUFFIX.get(checkpoint or "", "")


def cohort_label(slug: str) -> str:
    """The human label printed in titles; empty for real data with a real model."""
    parts = slug.split("-")
    words = []
    if parts[0] == "synthetic":
        words.append("SYNTHETIC DATA")
    elif parts[0] == "unknown":
        words.append("UNKNOWN DATA SOURCE")
    if "demo" in parts:
        words.append("DEMONSTRATION ENCODER (not MedCLIP)")
    if "testsize" in parts:
        words.append("TEST-SIZE MODEL")
    return " + ".join(words)


def cohort_title(slug: str) -> str:
    """A title suffix: "" for real results, else " [SYNTHETIC DATA — not a real result]"."""
    label = cohort_label(slug)
    return f" [{label} — not a real result]" if label else ""


def cohort_heading(slug: str) -> str:
    """Section heading text for a cohort."""
    label = cohort_label(slug)
    return f"{label} (not a real result)" if label else "Real data, full model"


def cohort_expr(data_source: str = "data_source", checkpoint: str = "checkpoint") -> pl.Expr:
    """The cohort slug as a Polars expression over the provenance columns."""
    source = (
        pl.when(pl.col(data_source).is_in(["real", "synthetic"]))
        .then(pl.col(data_source))
        .otherwise(pl.lit("unknown"))
    )
    suffix = pl.col(checkpoint).replace_strict(_MODEL_SUFFIX, default="", return_dtype=pl.String)
    return pl.concat_str([source, suffix.fill_null("")]).alias("cohort")


def sorted_cohorts(slugs: list[str] | set[str]) -> list[str]:
    """Real first, then the stand-ins, then anything unknown (alphabetical)."""

    def key(slug: str) -> tuple[int, str]:
        return (_ORDER.index(slug) if slug in _ORDER else len(_ORDER), slug)

    return sorted(set(slugs), key=key)
