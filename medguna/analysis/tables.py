"""Writing a table as Markdown (one section per cohort), CSV and Parquet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from medguna.analysis.cohorts import cohort_heading, sorted_cohorts

MISSING = "—"


def format_cell(value: object, column: str, digits: int = 3) -> str:
    """Text for one Markdown cell: fixed decimals, signed gains, a dash for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if column.startswith(("gain", "mean_gain", "median_gain", "mean gain")) and "_sd" not in column:
            return f"{value:+.{digits}f}"
        if value != 0 and (abs(value) < 10**-digits or abs(value) >= 1e6):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    frame: pl.DataFrame, columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """A GitHub-flavoured Markdown table of `columns` (all when None)."""
    columns = [c for c in (columns or frame.columns) if c in frame.columns]
    if frame.height == 0:
        return "_(no rows)_\n"
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(format_cell(row[c], c, digits) for c in columns) + " |"
        for row in frame.select(columns).iter_rows(named=True)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def markdown_document(
    frame: pl.DataFrame,
    title: str,
    columns: Sequence[str] | None = None,
    notes: Sequence[str] = (),
    section_by: str | None = "cohort",
) -> str:
    """Title, notes, then one table per cohort (real results first), never one mixed table."""
    parts = [f"# {title}\n"]
    parts += [f"> {note}\n" for note in notes]
    if (
        section_by is None
        or section_by not in frame.columns
        or frame.height == 0
        or frame[section_by].null_count() == frame.height
    ):
        parts.append(markdown_table(frame, columns))
        return "\n".join(parts)
    for slug in sorted_cohorts(frame[section_by].unique().to_list()):
        part = frame.filter(pl.col(section_by) == slug)
        shown = [c for c in (columns or frame.columns) if c != section_by]
        parts.append(f"## {cohort_heading(slug)}\n")
        parts.append(markdown_table(part, shown))
    return "\n".join(parts)


def write_table(
    frame: pl.DataFrame,
    out_dir: Path,
    stem: str,
    title: str,
    columns: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """`<stem>.md`, `<stem>.csv`, `<stem>.parquet` under out_dir; returns the three paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    csv = out_dir / f"{stem}.csv"
    parquet = out_dir / f"{stem}.parquet"
    md.write_text(markdown_document(frame, title, columns, notes))
    frame.write_csv(csv)
    frame.write_parquet(parquet)
    return [md, csv, parquet]
