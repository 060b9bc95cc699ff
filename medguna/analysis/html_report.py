"""`report.html`: the whole study report as one page to open and explore, with no network.

Everything is inline: the CSS, a few lines of JavaScript that sort a table by the clicked column,
the figures as data URIs and the parallel-coordinates view as SVG drawn here. Tables are rendered
from whatever columns the report's tables have, one table per cohort, each synthetic or test-size
section labelled as the Markdown files label it.
"""

from __future__ import annotations

import base64
import html
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from medguna.analysis.cohorts import cohort_heading, cohort_label, sorted_cohorts
from medguna.analysis.configurations import searched_params
from medguna.analysis.html_summary import search_space_section, summary_section
from medguna.analysis.summary import PAPER_MARK, VS_PAPER, VS_ZEROSHOT, ci_columns
from medguna.analysis.tables import format_cell
from medguna.results import COMPLETED, SEARCH_STAGE, TRIAL_OUTCOMES

HTML_FILE = "report.html"
TENSORBOARD_RUN = "tensorboard_run"  # <dataset>/<trial folder>: the run name under `--logdir <study>`


@dataclass
class TableSection:
    """One table of the report as it was written: title, shown columns (None: all), notes."""

    stem: str
    title: str
    columns: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def table_html(frame: pl.DataFrame, columns: Sequence[str] | None = None,
               table_id: str = "", css_class: str = "") -> str:
    """A sortable table: every shown column, formatted cells, raw values in data-sort."""
    shown = [c for c in (columns or frame.columns) if c in frame.columns]
    if frame.height == 0 or not shown:
        return '<p class="empty">(no rows)</p>'
    # A heading may break after an underscore (<wbr>), never inside a word.
    head = "".join(f'<th scope="col" title="sort by {esc(c)}">{esc(c).replace("_", "_<wbr>")}</th>'
                   for c in shown)
    rows = []
    for row in frame.select(shown).iter_rows(named=True):
        cells = []
        for c in shown:
            value = row[c]
            sort = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
            cells.append(f'<td data-sort="{esc(sort)}">{esc(format_cell(value, c))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<table class="sortable{" " + css_class if css_class else ""}"{ident}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def cohort_tables(frame: pl.DataFrame, section: TableSection, with_run: bool = True,
                  css_class: str = "") -> str:
    """One table per cohort (real first), each under its cohort heading, never one mixed table."""
    columns = _with_run_column(frame, section.columns) if with_run else section.columns
    frame = _add_run_column(frame) if with_run else frame
    if "cohort" not in frame.columns or frame.height == 0 or frame["cohort"].null_count() == frame.height:
        return table_html(frame, columns, f"table-{section.stem}", css_class)
    parts = []
    for slug in sorted_cohorts(frame["cohort"].drop_nulls().unique().to_list()):
        part = frame.filter(pl.col("cohort") == slug)
        shown = [c for c in (columns or part.columns) if c != "cohort"]
        label = cohort_label(slug)
        parts.append(f'<h4 class="cohort{" synthetic" if label else ""}">{esc(cohort_heading(slug))}</h4>')
        parts.append(table_html(part, shown, f"table-{section.stem}-{slug}", css_class))
    return "\n".join(parts)


def _add_run_column(frame: pl.DataFrame) -> pl.DataFrame:
    if "trial" not in frame.columns or "dataset" not in frame.columns:
        return frame
    return frame.with_columns(
        pl.concat_str([pl.col("dataset"), pl.lit("/"), pl.col("trial")]).alias(TENSORBOARD_RUN))


def _with_run_column(frame: pl.DataFrame, columns: list[str] | None) -> list[str] | None:
    """The shown columns with the TensorBoard run name right after the trial name."""
    if "trial" not in frame.columns or "dataset" not in frame.columns:
        return columns
    shown = list(columns or frame.columns)
    at = shown.index("trial") + 1 if "trial" in shown else len(shown)
    return [*shown[:at], TENSORBOARD_RUN, *shown[at:]]


# ---- parallel coordinates ----

PC_WIDTH, PC_HEIGHT, PC_MARGIN = 860, 300, 48
PC_CROWDED = 150  # axes closer than this (pixels) have room for about 20 characters of name
LOW_COLOUR, HIGH_COLOUR = (215, 48, 39), (33, 102, 172)  # low objective red, high blue


def parallel_coordinates_svg(rows: pl.DataFrame, params: Sequence[str], objective: str,
                             title: str) -> str:
    """Completed trials as lines across one axis per searched hyperparameter, then the objective;
    a line's colour is its objective (red low, blue high); hover names the trial."""
    rows = rows.filter(pl.col("trial_status") == COMPLETED).filter(pl.col(objective).is_not_null())
    axes = [p for p in params if p in rows.columns] + [objective]
    if rows.height == 0:
        return f'<p class="empty">{esc(title)}: no completed trial to draw.</p>'
    step = (PC_WIDTH - 2 * PC_MARGIN) / max(len(axes) - 1, 1)
    top, bottom = PC_MARGIN, PC_HEIGHT - PC_MARGIN
    scales = {a: _axis_scale(rows[a].to_list(), top, bottom) for a in axes}
    values = rows[objective].to_list()
    lo, hi = min(values), max(values)
    parts = [(f'<svg class="parallel" role="img" viewBox="0 0 {PC_WIDTH} {PC_HEIGHT}" '
              f'width="{PC_WIDTH}" height="{PC_HEIGHT}" aria-label="{esc(title)}">'),
             f"<title>{esc(title)}</title>"]
    for row in rows.iter_rows(named=True):
        points = " ".join(f"{PC_MARGIN + i * step:.1f},{scales[a][0](row[a]):.1f}"
                          for i, a in enumerate(axes))
        share = 0.5 if hi == lo else (row[objective] - lo) / (hi - lo)
        label = f"{row.get('trial', '')}: " + ", ".join(f"{a}={format_cell(row[a], a)}" for a in axes)
        parts.append(f'<polyline class="pc-line" data-trial="{esc(row.get("trial", ""))}" '
                     f'points="{points}" stroke="{_colour(share)}"><title>{esc(label)}</title></polyline>')
    for i, a in enumerate(axes):
        x = PC_MARGIN + i * step
        anchor = "start" if i == 0 else "end" if i == len(axes) - 1 else "middle"
        parts.append(f'<line class="pc-axis" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        # Close axes alternate their names between two heights, so long names never overlap.
        lift = 14 if step < PC_CROWDED and i % 2 else 0
        parts.append(f'<text class="pc-name" x="{x:.1f}" y="{top - 18 - lift}" text-anchor="{anchor}">'
                     f"{esc(a)}</text>")
        # The last axis writes its ticks to its left, inside the drawing, never past its edge.
        tick_x, tick_anchor = (x - 4, "end") if i == len(axes) - 1 else (x + 4, "start")
        for text, y in scales[a][1]:
            parts.append(f'<text class="pc-tick" x="{tick_x:.1f}" y="{y + 4:.1f}" '
                         f'text-anchor="{tick_anchor}">{esc(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axis_scale(values: list, top: float, bottom: float):
    """(value -> y, [(tick text, y)]): numbers linearly (high at the top), other values evenly."""
    present = [v for v in values if v is not None]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and len(set(present)) > 1:
        lo, hi = min(present), max(present)

        def y(v):
            return (bottom + top) / 2 if v is None else bottom - (v - lo) / (hi - lo) * (bottom - top)

        return y, [(_tick(lo), bottom), (_tick(hi), top)]
    levels = sorted({_tick(v) if isinstance(v, float) else str(v) for v in present})
    gap = (bottom - top) / max(len(levels) - 1, 1)
    where = {v: (bottom + top) / 2 if len(levels) == 1 else bottom - i * gap
             for i, v in enumerate(levels)}
    return (lambda v: where.get(_tick(v) if isinstance(v, float) else str(v), bottom)), \
        [(v, where[v]) for v in levels]


def _tick(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else format_cell(float(value), "")


def _colour(share: float) -> str:
    r, g, b = (round(lo + (hi - lo) * share) for lo, hi in zip(LOW_COLOUR, HIGH_COLOUR, strict=True))
    return f"rgb({r},{g},{b})"


# ---- the page ----

def figure_html(path: Path, out_dir: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    name = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else path.name
    return (f'<figure><img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{esc(path.stem)} (<a href="{esc(name)}">{esc(name)}</a>)</figcaption></figure>')


def file_links(stem: str) -> str:
    return " · ".join(f'<a href="{esc(stem)}.{ext}">{ext.upper() if ext != "md" else "Markdown"}</a>'
                      for ext in ("csv", "parquet", "md"))


def write_html_report(report, results, metric: str) -> Path:
    """Write `<report.out_dir>/report.html` for a built report (see report.build_report)."""
    path = report.out_dir / HTML_FILE
    path.write_text(page_html(report, results, metric), encoding="utf-8")
    return path


def page_html(report, results, metric: str) -> str:
    trials = results.trials
    names = ", ".join(s.name for s in results.studies)
    stand_ins = [c for c in sorted_cohorts(trials["cohort"].unique().to_list()) if cohort_label(c)]
    body = [f"<header><h1>medguna study report: {esc(names)}</h1>"]
    if stand_ins:
        body.append('<p class="synthetic-banner" id="synthetic-banner"><strong>'
                    + esc(" / ".join(cohort_label(c) for c in stand_ins))
                    + "</strong>: this report contains results on synthetic stand-ins or a "
                    "test-size or demonstration model. They are kept in their own sections, never ranked with real "
                    "results, and say nothing about real performance.</p>")
    # A table added without its section record is still shown, titled by its file stem.
    sections = [(stem, report.sections.get(stem) or TableSection(stem, stem)) for stem in report.tables]
    boards = [(s, t) for s, t in sections if s.startswith("leaderboard_")]
    others = [(s, t) for s, t in sections if not s.startswith("leaderboard_")]
    body.append('<nav><a href="#summary">Summary</a> · <a href="#search-space">Search space</a> · '
                '<a href="#leaderboards">Leaderboards</a> · <a href="#studies">Studies</a> · '
                '<a href="#parallel">Parallel coordinates</a> · <a href="#tables">Effects and more</a>'
                ' · <a href="#figures">Figures</a> · <a href="#files">Files</a></nav></header>')
    body.append(summary_section(getattr(report, "summary", None), metric))
    body.append(search_space_section(results))
    body.append('<section id="leaderboards"><h2>Leaderboards</h2>')
    body += [_leaderboard_section(report, stem, section, results.param_names, metric)
             for stem, section in boards]
    body.append("</section>")
    body.append(_studies_section(results, metric))
    body.append(_parallel_section(results))
    body.append('<section id="tables"><h2>Effects, importance and seeds</h2>')
    # The seeds table has the confirmed board's shape: its answer columns lead, the rest fold away.
    body += [_leaderboard_section(report, stem, section, results.param_names, metric) if stem == "seeds"
             else _table_section(report, stem, section) for stem, section in others]
    body.append("</section>")
    body.append('<section id="figures"><h2>Figures</h2>'
                + "".join(figure_html(p, report.out_dir) for p in report.figures) + "</section>")
    body.append('<section id="files"><h2>Files</h2><ul>'
                + f"<li>summary: {file_links('summary')}</li>"
                + "".join(f"<li>{esc(stem)}: {file_links(stem)}</li>" for stem in report.tables)
                + '<li>every trial: <a href="trials.csv">trials.csv</a> · <a href="trials.parquet">'
                'trials.parquet</a>; every epoch: <a href="epochs.parquet">epochs.parquet</a>; '
                '<a href="index.md">index.md</a></li></ul></section>')
    if report.notes:
        body.append('<section id="notes"><h2>Notes</h2><ul>'
                    + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul></section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>medguna report: {esc(names)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}<script>{SORT_JS}</script></body></html>\n")


def _studies_section(results, metric: str) -> str:
    rows = pl.DataFrame([{
        "study": s.name, "folder": str(s.path), "objective": s.objective, "mode": s.mode,
        "encoder": s.encoder, "checkpoint": s.checkpoint, "created": s.created,
        "datasets (data source)": ", ".join(f"{d} ({s.data_source.get(d, '?')})" for d in s.datasets),
        "TensorBoard": f"tensorboard --logdir {shlex.quote(str(s.path))}",
    } for s in results.studies])
    trials = results.trials
    if "stage" not in trials.columns:
        trials = trials.with_columns(pl.lit(SEARCH_STAGE).alias("stage"))
    # Which stage each count is: the search's trials, or the confirmation's reruns with fresh seeds.
    key = ["cohort", "study", "dataset", "stage"]
    counts = trials.with_columns(pl.col("stage").fill_null(SEARCH_STAGE)).group_by(key).agg(
        *((pl.col("trial_status") == s).sum().alias(s) for s in TRIAL_OUTCOMES), pl.len().alias("trials"),
    ).with_columns(pl.col("stage").replace({SEARCH_STAGE: "search", "confirm": "confirmation"})
    ).sort(["cohort", "study", "dataset", pl.col("stage") != "search"])
    return ('<section id="studies"><h2>Studies</h2>' + table_html(rows, table_id="table-studies")
            + f"<p>Headline test metric: <code>{esc(metric)}</code>. Each trial's TensorBoard run is "
            f"<code>&lt;dataset&gt;/&lt;trial&gt;</code> under <code>tensorboard --logdir "
            f"&lt;study folder&gt;</code> (column <code>{TENSORBOARD_RUN}</code>).</p>"
            '<h3>Trial states</h3>' + table_html(counts, table_id="table-states") + "</section>")


def _table_section(report, stem: str, section: TableSection) -> str:
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in section.notes)
    return (f'<article id="{esc(stem)}"><h3>{esc(section.title)}</h3>{notes}'
            f"{cohort_tables(report.tables[stem], section)}"
            f'<p class="files">Files: {file_links(stem)}</p></article>')


# The leading columns of a leaderboard as shown: the answer first, everything else in a
# collapsible table below it (and in the CSV).
INTERVAL, OUTCOME = "95% CI", "selected epoch / outcome"


def leaderboard_view(board: pl.DataFrame, params: Sequence[str], metric: str) -> tuple[pl.DataFrame, list[str]]:
    """The leading columns of a board (with the derived interval and outcome), under short
    headings, and those headings in order."""
    low, high = ci_columns(metric)
    derived = [
        pl.when(pl.col("trial_status") != COMPLETED)
        .then(pl.concat_str([pl.col("trial_status"), pl.lit(": "), pl.col("note")]))
        .when(pl.col("selected_epoch") == 0).then(pl.lit("stage 1 alone"))
        .otherwise(pl.format("epoch {}", pl.col("selected_epoch"))).alias(OUTCOME),
    ]
    if low in board.columns and high in board.columns:
        # A no-break space after the comma: the interval never splits over two lines.
        derived.append(pl.when(pl.col(low).is_not_null()).then(pl.format(
            "[{},\u00a0{}]", pl.col(low).round(3).cast(pl.String).str.pad_end(5, "0"),
            pl.col(high).round(3).cast(pl.String).str.pad_end(5, "0"))).alias(INTERVAL))
    frame = board.with_columns(derived)
    # Short headings, so the leading columns fit a 1400-pixel window; the full names are in the
    # table below them and in the CSV.
    headings = {"rank": "rank", "trial": "trial", PAPER_MARK: "★", **{p: p for p in params},
                f"test_{metric}": f"test {metric.replace('_', ' ')}", INTERVAL: INTERVAL, f"gain_{metric}": "gain vs zero-shot",
                VS_ZEROSHOT: "vs zero-shot", VS_PAPER: "vs paper's hyperparameters", OUTCOME: OUTCOME}
    return _lead_columns(frame, headings)


def summary_board_view(board: pl.DataFrame, params: Sequence[str], metric: str) -> tuple[pl.DataFrame, list[str]]:
    """The leading columns of the across-datasets and confirmed boards, under short headings: the
    configuration's dimensions and its mean scores; the rest (the configuration as one string,
    the objective's name, each spread's bounds) is in the table below them."""
    label = metric.replace("_", " ")
    headings = {
        "dataset": "dataset", "rank": "rank", PAPER_MARK: "★", **{p: p for p in params},
        # across datasets
        "coverage": "datasets", "mean_rank": "mean rank", f"mean_gain_{metric}": "mean gain vs zero-shot",
        f"mean_test_{metric}": f"mean test {label}",
        # confirmed
        "n": "seeds", f"test_{metric}_mean": f"mean test {label}", f"test_{metric}_over_seeds": "spread of test",
        f"gain_{metric}_mean": "mean gain vs zero-shot", f"gain_{metric}_over_seeds": "spread of gain",
        "objective_over_seeds": "validation over seeds",
        "seeds_note": "note",
    }
    return _lead_columns(board, headings)


def _lead_columns(frame: pl.DataFrame, headings: dict[str, str]) -> tuple[pl.DataFrame, list[str]]:
    """`frame`'s columns named in `headings` (those it has), renamed to them, cohort first, and the
    headings in order; the paper's point as its mark alone (the full label is in the table below
    and the CSV)."""
    present = {c: h for c, h in headings.items() if c in frame.columns}
    if PAPER_MARK in present:
        frame = frame.with_columns(pl.when(pl.col(PAPER_MARK).fill_null("") != "").then(pl.lit("★"))
                                   .otherwise(pl.lit("")).alias(PAPER_MARK))
    frame = frame.select("cohort", *present).rename({c: h for c, h in present.items() if c != h})
    return frame, list(present.values())


def _leaderboard_section(report, stem: str, section: TableSection, param_names, metric: str) -> str:
    board = report.tables[stem]
    view = leaderboard_view if "trial_status" in board.columns else summary_board_view
    frame, lead = view(board, searched_params(board, param_names), metric)
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in section.notes)
    lead_section = TableSection(f"{stem}-lead", section.title, lead)
    # A trial leaderboard's notes are about its columns; the summary boards' say what the spread covers.
    per_trial = view is leaderboard_view
    more = "All columns, notes and the TensorBoard run of each trial" if per_trial else "All columns"
    return (f'<article id="{esc(stem)}"><h3>{esc(section.title)}</h3>{"" if per_trial else notes}'
            f"{cohort_tables(frame, lead_section, with_run=False, css_class='lead')}"
            f"<details><summary>{more}</summary>{notes if per_trial else ''}"
            f"{cohort_tables(board, section)}</details>"
            f'<p class="files">Files: {file_links(stem)}</p></article>')


def _parallel_section(results) -> str:
    trials = results.trials
    parts = [('<section id="parallel"><h2>Parallel coordinates</h2><p>Completed trials, one line '
              "each, across the searched hyperparameters and the validation objective (the last "
              "axis); red is a low objective, blue a high one. Hover a line for its trial.</p>")]
    for dataset in sorted(trials["dataset"].unique().to_list()):
        rows = trials.filter(pl.col("dataset") == dataset)
        params = searched_params(rows, results.param_names)
        for cohort in sorted_cohorts(rows["cohort"].unique().to_list()):
            part = rows.filter(pl.col("cohort") == cohort)
            label = cohort_label(cohort)
            title = f"{dataset}" + (f" [{label}]" if label else "")
            parts.append(f'<h3 class="{"synthetic" if label else ""}">{esc(title)}</h3>')
            parts.append(parallel_coordinates_svg(part, params, "objective_selected", title))
    return "".join(parts) + "</section>"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1400px;
padding:0 1.5rem 3rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin:1.2rem 0 .4rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
margin-top:2rem}h3{margin:1.4rem 0 .3rem}h4{margin:.8rem 0 .3rem}
nav a{margin:0 .15rem}.synthetic-banner{background:#fff3cd;border:1px solid #e0a800;
padding:.6rem .8rem;border-radius:6px}.cohort.synthetic,h3.synthetic{color:#9a6700}
table{border-collapse:collapse;font-size:.82rem;margin:.3rem 0 .6rem;display:block;overflow-x:auto;
max-width:100%}th,td{border:1px solid #d0d7de;padding:.2rem .45rem;text-align:left;white-space:nowrap}
th{background:#f6f8fa;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tbody tr:nth-child(even){background:#fafbfc}tbody tr:hover{background:#eef4ff}
.note{color:#57606a;font-size:.85rem;margin:.2rem 0}.files{font-size:.85rem}
.empty{color:#57606a;font-style:italic}figure{display:inline-block;margin:.5rem 1rem .5rem 0;
vertical-align:top}figure img{max-width:640px;border:1px solid #d0d7de}
figcaption{font-size:.8rem;color:#57606a}svg.parallel{background:#fff;border:1px solid #d0d7de;
max-width:100%;height:auto}.pc-line{fill:none;stroke-width:2;opacity:.75}
.pc-line:hover{stroke-width:4;opacity:1}.pc-axis{stroke:#57606a;stroke-width:1}
.pc-name{font-size:12px;font-weight:600}.pc-tick{font-size:10px;fill:#57606a}
.answers{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:.8rem}
.answer{border:1px solid #d0d7de;border-radius:6px;padding:.2rem .9rem .4rem;background:#f6f8fa}
.answer h3{margin:.5rem 0 .2rem}.answer p,.answer ul{margin:.25rem 0}.answer ul{padding-left:1.1rem}
.answer .score{font-size:1.05rem}.answer .score b{font-size:1.5rem}.ci{color:#1f2328}
.config{font-family:ui-monospace,monospace;font-size:.8rem}.counts{color:#57606a;font-size:.85rem}
.tag{font-size:.7rem;font-weight:600;color:#9a6700;background:#fff3cd;border:1px solid #e0a800;
border-radius:4px;padding:0 .3rem;vertical-align:middle}
table.space td{white-space:normal}table.space td:last-child{max-width:780px}
#table-studies td{white-space:normal;overflow-wrap:anywhere;max-width:22rem}
table.lead th,table.lead td{white-space:normal}table.lead th{max-width:8rem;vertical-align:bottom}
table.lead td{max-width:12rem}details{margin:.2rem 0 .4rem}summary{cursor:pointer;color:#0969da;font-size:.9rem}
"""

# Click a column heading to sort its table; again to reverse. Numbers sort as numbers, missing
# values last either way.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""
