"""The study report: every table and figure under one folder, linked from `index.md`.

`write_report` is what the study runner calls at the end of a study; `short_leaderboard` is the
few lines it prints when a study ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from medguna.analysis.cohorts import cohort_heading, cohort_title, sorted_cohorts
from medguna.analysis.configurations import searched_params
from medguna.analysis.effects import EFFECT_PARAMS, effect_table
from medguna.analysis.importance import param_importance
from medguna.analysis.layout import COMPLETED, DEFAULT_METRIC, FAILED, TRIAL_STATES
from medguna.analysis.leaderboards import across_leaderboard, dataset_leaderboard, seeds_table
from medguna.analysis.loading import ResultSet, load_results
from medguna.analysis.plots import write_figures
from medguna.analysis.tables import format_cell, markdown_table, write_table

StudyDirs = str | Path | Sequence[str | Path]


@dataclass
class Report:
    """What a report wrote: tables by file stem, figure paths, notes, and the index."""

    out_dir: Path
    index: Path
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _first_dir(study_dirs: StudyDirs) -> Path:
    return Path(study_dirs if isinstance(study_dirs, (str, Path)) else next(iter(study_dirs)))


def write_report(
    study_dirs: StudyDirs,
    out_dir: str | Path | None = None,
    metric: str = DEFAULT_METRIC,
    progress: bool = True,
) -> Path:
    """Write all tables, figures and `index.md` for the studies; returns the index path.

    out_dir defaults to `<first study dir>/analysis`.
    """
    results = load_results(study_dirs, progress=progress)
    target = Path(out_dir) if out_dir is not None else _first_dir(study_dirs) / "analysis"
    return build_report(results, target, metric).index


def _leaderboard_columns(board: pl.DataFrame, metric: str) -> list[str]:
    shown = ["rank", "trial", "trial_status", "reference"]
    params = [
        c
        for c in board.columns
        if c
        not in ("cohort", "study", "dataset", "rank", "trial", "trial_status", "reference", "seed")
        and board.columns.index(c) < board.columns.index("seed")
    ]
    return [
        *shown,
        *params,
        "seed",
        "objective_value",
        "selected_epoch",
        f"test_{metric}",
        f"zeroshot_test_{metric}",
        f"gain_{metric}",
        "note",
    ]


def _with_schema(frame: pl.DataFrame, note: str) -> pl.DataFrame:
    # An empty result still gets its three files, holding one row that says why it is empty.
    return (
        frame
        if frame.width
        else pl.DataFrame(
            {"cohort": [None], "note": [note]}, schema={"cohort": pl.String, "note": pl.String}
        )
    )


def build_report(results: ResultSet, out_dir: Path, metric: str = DEFAULT_METRIC) -> Report:
    """Write the report of already-loaded results into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out_dir, index=out_dir / "index.md", notes=list(results.notes))
    trials, names = results.trials, results.param_names
    objective_note = (
        "Ranked by the study objective on validation (completed trials only); test "
        f"metrics are those of the selected epoch; gain = test {metric} minus "
        "zero-shot test. Stopped-early, failed and incomplete trials are listed "
        "below the ranked ones, unranked."
    )
    for dataset in sorted(trials["dataset"].unique().to_list()):
        board = dataset_leaderboard(trials, dataset, names, metric)
        _write(
            report,
            board,
            f"leaderboard_{dataset}",
            f"Leaderboard: {dataset}",
            _leaderboard_columns(board, metric),
            [objective_note],
        )
    across = across_leaderboard(trials, names, metric)
    _write(
        report,
        _with_schema(across, "no completed trial"),
        "leaderboard_across",
        "Configurations across datasets",
        notes=[
            (
                "Per dataset, a configuration's seeds are averaged and configurations are "
                "ranked by mean validation objective; here configurations run on more datasets "
                "come first (coverage), then lower mean rank, then higher mean gain over "
                "zero-shot."
            )
        ],
    )
    for param in EFFECT_PARAMS:
        table = effect_table(trials, param, metric)
        _write(
            report,
            _with_schema(table, f"no completed trial with {param}"),
            f"effects_{param}",
            f"Effect of {param}",
            notes=[
                (
                    "Completed trials only: median, quartiles (linear interpolation) and IQR "
                    "of the validation objective and of the test gain over zero-shot."
                )
            ],
        )
    _write_importance(report, results)
    seeds = seeds_table(trials, names, metric)
    _write(
        report,
        _with_schema(seeds, "no configuration ran with several seeds"),
        "seeds",
        "Seed repeats: mean and 95% confidence interval",
        notes=["Interval: mean ± t(0.975, n−1)·sd/√n (Student t, sample sd)."],
    )
    trials.write_csv(out_dir / "trials.csv")
    trials.write_parquet(out_dir / "trials.parquet")
    results.epochs.write_parquet(out_dir / "epochs.parquet")
    report.figures = write_figures(trials, results.epochs, names, out_dir / "figures", metric)
    report.index.write_text(_index_text(report, results, metric))
    return report


def _write(
    report: Report,
    frame: pl.DataFrame,
    stem: str,
    title: str,
    columns: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> None:
    write_table(frame, report.out_dir, stem, title, columns, notes)
    report.tables[stem] = frame


def _write_importance(report: Report, results: ResultSet) -> None:
    cohorts = results.trials.select("study", "dataset", "cohort").unique(["study", "dataset"])
    by_dataset: dict[str, list[pl.DataFrame]] = {}
    notes: dict[str, list[str]] = {}
    for study in results.studies:
        for dataset in study.datasets:
            found = cohorts.filter((pl.col("study") == study.name) & (pl.col("dataset") == dataset))
            if found.height == 0:
                continue
            result = param_importance(study, dataset)
            if result.note:
                notes.setdefault(dataset, []).append(f"{study.name}: {result.note}")
                report.notes.append(f"{study.name}/{dataset}: {result.note}")
            if result.table.height:
                by_dataset.setdefault(dataset, []).append(
                    result.table.with_columns(
                        pl.lit(found["cohort"][0]).alias("cohort"),
                        pl.lit(study.name).alias("study"),
                    ).select("cohort", "study", "param", "importance", "n_trials", "evaluator")
                )
            else:
                by_dataset.setdefault(dataset, [])
    for dataset, frames in sorted(by_dataset.items()):
        frame = pl.concat(frames) if frames else pl.DataFrame()
        _write(
            report,
            _with_schema(frame, "; ".join(notes.get(dataset, []))),
            f"importance_{dataset}",
            f"Hyperparameter importance: {dataset}",
            notes=[
                "From the exported Optuna study, full-budget trials only.",
                *notes.get(dataset, []),
            ],
        )


def _state_counts(trials: pl.DataFrame) -> pl.DataFrame:
    counts = trials.group_by(["cohort", "study", "dataset"]).agg(
        *((pl.col("trial_status") == state).sum().alias(state) for state in TRIAL_STATES),
        pl.len().alias("trials"),
    )
    return counts.sort(["cohort", "study", "dataset"])


def _index_text(report: Report, results: ResultSet, metric: str) -> str:
    lines = ["# medguna study report", ""]
    cohorts = sorted_cohorts(results.trials["cohort"].unique().to_list())
    stand_ins = [c for c in cohorts if cohort_title(c)]
    if stand_ins:
        lines += [
            (
                "> **Warning:** this results set contains "
                f"{', '.join(cohort_heading(c) for c in stand_ins)} "
                "rows. They are kept in their own sections and figures, never ranked with real "
                "results."
            ),
            "",
        ]
    lines += [
        "## Studies",
        "",
        (
            "| study | folder | objective | mode | encoder | checkpoint | "
            "created | datasets (data source) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results.studies:
        datasets = ", ".join(f"{d} ({s.data_source.get(d, '?')})" for d in s.datasets)
        cells = [
            s.name,
            str(s.path),
            s.objective,
            s.mode,
            s.encoder,
            s.checkpoint,
            s.created,
            datasets,
        ]
        lines.append("| " + " | ".join(format_cell(c, "") for c in cells) + " |")
    lines += [
        "",
        f"Headline test metric: `{metric}`.",
        "",
        "## Trial states",
        "",
        markdown_table(_state_counts(results.trials)),
        "## Tables",
        "",
    ]
    for stem in report.tables:
        lines.append(
            f"- {stem}: [Markdown]({stem}.md) · [CSV]({stem}.csv) · [Parquet]({stem}.parquet)"
        )
    lines += [
        (
            "- every trial: [trials.csv](trials.csv) · [trials.parquet](trials.parquet); every "
            "epoch: [epochs.parquet](epochs.parquet)"
        ),
        "",
        "## Figures",
        "",
    ]
    for path in report.figures:
        rel = path.relative_to(report.out_dir)
        lines += [f"### {path.stem}", "", f"![{path.stem}]({rel.as_posix()})", ""]
    if report.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


def short_leaderboard(study_dir: str | Path, top: int = 3, metric: str = DEFAULT_METRIC) -> str:
    """A few lines per dataset: zero-shot vs the `top` configurations by validation objective,
    and the paper's configuration; cohort labels on every dataset line."""
    return leaderboard_text(load_results(study_dir, progress=False), top, metric)


def leaderboard_text(results: ResultSet, top: int = 3, metric: str = DEFAULT_METRIC) -> str:
    """`short_leaderboard` of already-loaded results (any number of studies)."""
    trials = results.trials
    studies = ", ".join(f"{s.name} ({s.objective}, {s.mode})" for s in results.studies)
    lines = [
        (
            f"Study {studies}: ranked on validation; test {metric} at the selected epoch, "
            "gain over zero-shot in brackets"
        )
    ]
    for dataset in sorted(trials["dataset"].unique().to_list()):
        board = dataset_leaderboard(trials, dataset, results.param_names, metric)
        params = searched_params(trials.filter(pl.col("dataset") == dataset), results.param_names)
        for cohort in sorted_cohorts(board["cohort"].unique().to_list()):
            part = board.filter(pl.col("cohort") == cohort)
            states = ", ".join(
                f"{(part['trial_status'] == s).sum()} {s}"
                for s in TRIAL_STATES
                if (part["trial_status"] == s).sum()
            )
            zeroshot = part[f"zeroshot_test_{metric}"].drop_nulls()
            zs_text = format_cell(zeroshot[0], "") if zeroshot.len() else "—"
            lines.append(f"{dataset}{cohort_title(cohort)}: {states}; zero-shot test {zs_text}")
            ranked = part.filter(pl.col("trial_status") == COMPLETED).head(top)
            for row in ranked.iter_rows(named=True):
                lines.append("  " + _short_row(row, params, metric))
            if ranked.height == 0:
                lines += _failure_lines(part)
            reference = part.filter(pl.col("reference") != "")
            for row in reference.iter_rows(named=True):
                if row["trial_status"] != COMPLETED or row["rank"] > top:
                    lines.append("  " + _short_row(row, params, metric))
    return "\n".join(lines)


def _failure_lines(board: pl.DataFrame) -> list[str]:
    """No trial completed: each distinct failure reason once, with how many trials it stopped."""
    failed = board.filter(pl.col("trial_status") == FAILED)
    if failed.height == 0:
        return []
    reasons = failed.group_by("note").len().sort(["len", "note"], descending=[True, False])
    return [f"  {count} failed: {note or '(no reason recorded)'}"
            for note, count in reasons.iter_rows()]


def across_text(across: pl.DataFrame, top: int = 5, metric: str = DEFAULT_METRIC) -> str:
    """The top configurations across datasets, one line each, per cohort."""
    if across.height == 0 or "configuration" not in across.columns:
        return "Across datasets: no completed trial"
    lines = []
    for cohort in sorted_cohorts(across["cohort"].unique().to_list()):
        lines.append(f"Across datasets{cohort_title(cohort)}:")
        for row in across.filter(pl.col("cohort") == cohort).head(top).iter_rows(named=True):
            gain = format_cell(row[f"mean_gain_{metric}"], "gain")
            mark = " ★ reference" if row["reference"] else ""
            lines.append(
                f"  #{row['rank']} datasets {row['coverage']}, mean rank "
                f"{row['mean_rank']:.2f}, mean gain {gain} [{row['configuration']}]{mark}"
            )
    return "\n".join(lines)


def _short_row(row: dict, params: Sequence[str], metric: str) -> str:
    config = ", ".join(f"{p}={format_cell(row.get(p), p)}" for p in params)
    mark = " ★ reference" if row["reference"] else ""
    if row["trial_status"] != COMPLETED:
        return f"{row['trial']} {row['trial_status']}: {row['note']} [{config}]{mark}"
    test = format_cell(row[f"test_{metric}"], "")
    gain = format_cell(row[f"gain_{metric}"], "gain")
    objective = format_cell(row["objective_value"], "")
    return f"#{row['rank']} {row['trial']}: test {test} ({gain}), val {objective} [{config}]{mark}"
