"""Cohorts: real-data results kept apart from synthetic-data, demonstration- and test-size-model results.

A cohort is (data source, model, control, protocol). Every table and plot is computed within one
cohort and carries its label, so a synthetic, demonstration-encoder or test-size number can never
pass for a real (MedCLIP) result, and a control (runtime.control) or a reference-protocol trial
(runtime.protocol=reference) is never ranked with ordinary trials.
"""

from __future__ import annotations

import polars as pl

from medguna.config import DEMO_CHECKPOINT, TEST_SIZE_CHECKPOINT

REAL = "real"

# Sort order of cohorts in reports: real results first, then the stand-ins.
_ORDER = ("real", "real-demo", "real-testsize", "synthetic", "synthetic-demo", "synthetic-testsize")
# Stand-in models, by the checkpoint name result rows record, and the slug suffix they add.
_MODEL_SUFFIX = {DEMO_CHECKPOINT: "-demo", TEST_SIZE_CHECKPOINT: "-testsize"}
# Controls and protocols: slug parts "control_<name>" and "protocol_<name>" (the defaults add none).
_CONTROL_PREFIX, _PROTOCOL_PREFIX = "control_", "protocol_"
ORDINARY_CONTROL, ORDINARY_PROTOCOL = "none", "validation"


def cohort_slug(data_source: str | None, checkpoint: str | None, control: str | None = None,
                protocol: str | None = None) -> str:
    """A short file-name-safe key, e.g. "real", "synthetic-demo", "synthetic-testsize", "unknown",
    "synthetic-demo-control_oracle_pseudo_labels", "real-protocol_reference"."""
    source = data_source if data_source in ("real", "synthetic") else "unknown"
    slug = source + _MODEL_SUFFIX.get(checkpoint or "", "")
    if control and control != ORDINARY_CONTROL:
        slug += f"-{_CONTROL_PREFIX}{control}"
    if protocol and protocol != ORDINARY_PROTOCOL:
        slug += f"-{_PROTOCOL_PREFIX}{protocol}"
    return slug


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
    for part in parts:
        if part.startswith(_CONTROL_PREFIX):
            words.append(f"CONTROL runtime.control={part[len(_CONTROL_PREFIX):]}")
        elif part.startswith(_PROTOCOL_PREFIX):
            words.append(f"PROTOCOL runtime.protocol={part[len(_PROTOCOL_PREFIX):]}")
    return " + ".join(words)


def cohort_title(slug: str) -> str:
    """A title suffix: "" for real results, else " [SYNTHETIC DATA — not a real result]"."""
    label = cohort_label(slug)
    return f" [{label} — not a real result]" if label else ""


def cohort_heading(slug: str) -> str:
    """Section heading text for a cohort."""
    label = cohort_label(slug)
    return f"{label} (not a real result)" if label else "Real data, full model"


def cohort_expr(data_source: str = "data_source", checkpoint: str = "checkpoint",
                control: str = "control", protocol: str = "protocol") -> pl.Expr:
    """The cohort slug as a Polars expression over the provenance columns (the same as
    cohort_slug row by row; a missing control or protocol reads as the ordinary one)."""
    source = (
        pl.when(pl.col(data_source).is_in(["real", "synthetic"]))
        .then(pl.col(data_source))
        .otherwise(pl.lit("unknown"))
    )
    suffix = pl.col(checkpoint).replace_strict(_MODEL_SUFFIX, default="", return_dtype=pl.String)

    def part(column: str, prefix: str, ordinary: str) -> pl.Expr:
        value = pl.col(column).cast(pl.String).fill_null(ordinary)
        return (pl.when((value == ordinary) | (value == "")).then(pl.lit(""))
                .otherwise(pl.lit(f"-{prefix}") + value))

    return pl.concat_str([source, suffix.fill_null(""),
                          part(control, _CONTROL_PREFIX, ORDINARY_CONTROL),
                          part(protocol, _PROTOCOL_PREFIX, ORDINARY_PROTOCOL)]).alias("cohort")


def sorted_cohorts(slugs: list[str] | set[str]) -> list[str]:
    """Real first, then the stand-ins, then anything unknown (alphabetical)."""

    def key(slug: str) -> tuple[int, str]:
        base = slug.split(f"-{_CONTROL_PREFIX}")[0].split(f"-{_PROTOCOL_PREFIX}")[0]
        return (_ORDER.index(base) if base in _ORDER else len(_ORDER), slug)

    return sorted(set(slugs), key=key)
