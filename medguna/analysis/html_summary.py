"""The top of report.html: one block per dataset with the answer (medguna.analysis.summary), then
the study's budget and search space with what each searched dimension does."""

from __future__ import annotations

import html

import polars as pl

from medguna.analysis.cohorts import cohort_label
from medguna.analysis.summary import (
    DIMENSION_HELP,
    VS_PAPER,
    VS_ZEROSHOT,
    ci_columns,
    domain_text,
)
from medguna.analysis.tables import format_cell
from medguna.results import OBJECTIVE_SELECTED, PAPER_POINT, SELECTED_EPOCH


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, column: str = "") -> str:
    return _esc(format_cell(value, column))


def summary_section(summary: pl.DataFrame | None, metric: str) -> str:
    parts = ['<section id="summary"><h2>Summary: the selected configuration per dataset</h2>',
             (f'<p class="note">Selected = best validation objective among completed search trials; '
             f"its test {_esc(metric)} is at the epoch validation selected, with a 95% bootstrap "
             "interval over the test images. Verdicts are paired tests on the same test images.</p>")]
    if summary is None or summary.height == 0:
        parts.append('<p class="empty">No trial has finished yet.</p></section>')
        return "".join(parts)
    parts.append('<div class="answers">')
    parts += [_answer(row, metric) for row in summary.iter_rows(named=True)]
    parts.append("</div></section>")
    return "".join(parts)


def _answer(row: dict, metric: str) -> str:
    label = cohort_label(row["cohort"])
    tag = f'<br><span class="tag">{_esc(label)}</span>' if label else ""
    head = f'<article class="answer" data-dataset="{_esc(row["dataset"])}"><h3>{_esc(row["dataset"])}{tag}</h3>'
    counts = _counts(row)
    if not row.get("trial"):
        return head + f'<p class="empty">No completed trial.</p><p class="counts">{counts}</p></article>'
    low, high = ci_columns(metric)
    interval = (f' <span class="ci">95% CI [{_num(row.get(low))}, {_num(row.get(high))}]</span>'
                if row.get(low) is not None else ' <span class="ci">(no interval: no test predictions)</span>')
    epoch = ("stage 1 alone (no stage-2 epoch beat its teacher)"
             if row[SELECTED_EPOCH] == 0 else f"stage-2 epoch {row[SELECTED_EPOCH]}")
    paper = " (the paper's hyperparameters)" if row.get("is_paper_point") else ""
    ties = (f"  Tied first on validation with {row['tied_first'] - 1} other trial(s); the first launched "
            "is shown." if (row.get("tied_first") or 0) > 1 else "")
    lines = [
        f'<p class="score"><b>{_num(row[f"test_{metric}"])}</b> test {_esc(metric)}{interval}</p>',
        (f'<p><span class="config">{_esc(row["configuration"])}</span><br>'
        f"<b>{_esc(row['trial'])}</b>{paper}, {epoch}, validation {_num(row[OBJECTIVE_SELECTED])}."
        f'{_esc(ties)}</p><ul>'),
        (f"<li>vs zero-shot ({_num(row[f'zeroshot_test_{metric}'])}): <b>{_num(row['gain_vs_zeroshot'], 'gain')}</b>"
        f"{_verdict(row.get(VS_ZEROSHOT))}</li>"),
    ]
    if row.get("is_paper_point"):
        lines.append("<li>vs the paper's hyperparameters: this is that trial</li>")
    elif row.get(f"paper_test_{metric}") is not None:
        lines.append(f"<li>vs the paper's hyperparameters ({_num(row[f'paper_test_{metric}'])}): "
                     f"<b>{_num(row['gain_vs_paper'], 'gain')}</b>{_verdict(row.get(VS_PAPER))}</li>")
    else:
        lines.append("<li>vs the paper's hyperparameters: not run to completion in this study</li>")
    if row.get("confirm_seeds"):
        interval = f", {_esc(row['confirm_interval'])}" if row.get("confirm_interval") else ""
        lines.append(f"<li>confirmation, {row['confirm_seeds']} fresh seeds: mean test "
                     f"{_num(row[f'confirm_test_{metric}_mean'])}{interval}"
                     f"{_held(row[f'confirm_test_{metric}_mean'], row[f'test_{metric}'])}</li>")
    return head + "".join(lines) + f'<li class="counts">{counts}</li></ul></article>'


def _held(confirmed: float | None, search: float | None) -> str:
    """How far the fresh seeds' mean lands from the selected search trial's own test score: a
    selected trial is the best of several, so its score tends to be high by luck."""
    if confirmed is None or search is None:
        return ""
    difference = confirmed - search
    if abs(difference) < 0.0005:
        return "; the same as the search trial's"
    return f"; {abs(difference):.3f} {'below' if difference < 0 else 'above'} the search trial's {_num(search)}"


def _verdict(text: str | None) -> str:
    return f", {_esc(text)}" if text else ""


def _counts(row: dict) -> str:
    others = [f"{row[k]} {k.replace('_', ' ')}" for k in ("stopped_early", "failed", "incomplete") if row.get(k)]
    text = f"{row['trials']} search trials ran: {row['completed']} completed"
    text += "".join(f", {o}" for o in others)
    text += f"; {row['stage1_alone']} kept stage 1 alone"
    if row.get("confirm_trials"):
        text += f"; {row['confirm_trials']} confirmation runs"
    return _esc(text)


def search_space_section(results) -> str:
    parts = ['<section id="search-space"><h2>Budget and search space</h2>']
    paper = _paper_point(results.trials)
    for study in results.studies:
        facts = []  # what study.json records (older studies record less)
        if study.budget:
            facts.append({"demo": "the demonstration's small budget", "full": "the full budget"}.get(
                study.budget, f"budget {study.budget}"))
        if study.num_samples:
            facts.append("search trials per dataset: "
                         + ", ".join(f"{d} {n}" for d, n in study.num_samples.items()))
        facts.append(f"objective <code>{_esc(study.objective)}</code> ({_esc(study.mode)})")
        if study.confirm is not None:
            facts.append("no confirmation stage" if not study.confirm[0] else
                         f"then the {study.confirm[0]} best configuration(s) per dataset rerun with "
                         f"{study.confirm[1]} fresh seeds")
        parts.append(f"<p><b>{_esc(study.name)}</b>: "
                     + "; ".join(f if f.startswith("objective <code>") else _esc(f) for f in facts) + ".</p>")
        if not study.search_space:
            continue
        rows = "".join(
            f"<tr><td><code>{_esc(name)}</code></td><td>{_esc(domain_text(spec))}</td>"
            f"<td>{_esc(format_cell(paper.get(name), name))}</td><td>{_esc(DIMENSION_HELP.get(name, ''))}</td></tr>"
            for name, spec in study.search_space.items())
        parts.append('<table class="space" id="table-search-space"><thead><tr><th>dimension</th>'
                     "<th>searched over</th><th>paper's value</th><th>what it does</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return "".join(parts) + "</section>"


def _paper_point(trials: pl.DataFrame) -> dict:
    if PAPER_POINT not in trials.columns:
        return {}
    rows = trials.filter(pl.col(PAPER_POINT))
    return rows.row(0, named=True) if rows.height else {}
