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
    return " + ".join([*_stand_in_words(slug), *_input_words(slug)])


def _input_words(slug: str) -> list[str]:
    """The inputs that split a cohort (with_input_split): the checkpoint's or sentences' sha256."""
    words = []
    for part in slug.split("-"):
        if part.startswith(CHECKPOINT_PART):
            words.append(f"checkpoint sha256 {part[len(CHECKPOINT_PART):]}")
        elif part.startswith(DESCRIPTIONS_PART):
            words.append(f"descriptions sha256 {part[len(DESCRIPTIONS_PART):]}")
    return words


def _stand_in_words(slug: str) -> list[str]:
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
    return words


def cohort_title(slug: str) -> str:
    """A title suffix: "" for real results, else " [SYNTHETIC DATA — not a real result]"."""
    stand_in, inputs = " + ".join(_stand_in_words(slug)), " + ".join(_input_words(slug))
    if stand_in:
        return f" [{cohort_label(slug)} — not a real result]"
    return f" [{inputs}]" if inputs else ""


def cohort_heading(slug: str) -> str:
    """Section heading text for a cohort."""
    stand_in, inputs = " + ".join(_stand_in_words(slug)), " + ".join(_input_words(slug))
    if stand_in:
        return f"{cohort_label(slug)} (not a real result)"
    return "Real data, full model" + (f" ({inputs})" if inputs else "")


CHECKPOINT_PART, DESCRIPTIONS_PART = "ckpt", "desc"


def with_input_split(rows: pl.DataFrame, trial_key: list[str] | tuple[str, ...] = ()) -> pl.DataFrame:
    """Split a cohort where its trials read different files under one name: a checkpoint whose
    weights changed (checkpoint_sha256) or a description source whose sentences changed
    (descriptions_sha256 per description_source). Those trials get the hash in their cohort, so no
    table ranks them together; cohorts with one version of every input keep their slug.
    `trial_key`: the columns naming a trial, so all of a trial's rows (epochs) share its cohort."""
    if rows.height == 0 or "cohort" not in rows.columns:
        return rows
    original = rows.columns
    for column in ("checkpoint_sha256", "descriptions_sha256"):
        if column in rows.columns and trial_key:  # the value any row of the trial holds
            rows = rows.with_columns(pl.col(column).drop_nulls().first().over(list(trial_key)).alias(column))
    keys = ["cohort", "dataset"]
    if "checkpoint_sha256" in rows.columns:
        several = pl.col("checkpoint_sha256").drop_nulls().n_unique().over(keys) > 1
        rows = rows.with_columns(
            pl.when(several & pl.col("checkpoint_sha256").is_not_null())
            .then(pl.concat_str([pl.col("cohort"), pl.lit(f"-{CHECKPOINT_PART}"),
                                 pl.col("checkpoint_sha256").str.slice(0, 8)]))
            .otherwise(pl.col("cohort")).alias("cohort"))
    if {"descriptions_sha256", "description_source"} <= set(rows.columns):
        source_keys = [*keys, "study", "description_source"] if "study" in rows.columns else [
            *keys, "description_source"]
        several = pl.col("descriptions_sha256").drop_nulls().n_unique().over(source_keys) > 1
        rows = rows.with_columns(
            pl.when(several & pl.col("descriptions_sha256").is_not_null())
            .then(pl.concat_str([pl.col("cohort"), pl.lit(f"-{DESCRIPTIONS_PART}"),
                                 pl.col("descriptions_sha256").str.slice(0, 8)]))
            .otherwise(pl.col("cohort")).alias("cohort"))
    return rows.select(original)


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
