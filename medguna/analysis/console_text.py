"""The leaderboard as the few lines a study prints when it ends (and `medguna analyze` prints):
per dataset and cohort, zero-shot against the best configurations by validation objective, the
paper's configuration, and the failures when nothing completed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from medguna.analysis.cohorts import cohort_title, sorted_cohorts
from medguna.analysis.configurations import searched_params
from medguna.analysis.confirmed import board_trials, search_trials
from medguna.analysis.leaderboards import PAPER_POINT_COLUMN, dataset_leaderboard
from medguna.analysis.loading import ResultSet, load_results
from medguna.analysis.tables import format_cell
from medguna.analysis.uncertainty import ci_columns, trial_uncertainty, with_uncertainty
from medguna.results import COMPLETED, DEFAULT_METRIC, FAILED, OBJECTIVE_SELECTED, TRIAL_OUTCOMES


def short_leaderboard(study_dir: str | Path, top: int = 3, metric: str = DEFAULT_METRIC) -> str:
    """A few lines per dataset: zero-shot vs the `top` configurations by validation objective,
    and the paper's configuration; cohort labels on every dataset line."""
    return leaderboard_text(load_results(study_dir, progress=False), top, metric)


def leaderboard_text(results: ResultSet, top: int = 3, metric: str = DEFAULT_METRIC) -> str:
    """`short_leaderboard` of already-loaded results (any number of studies)."""
    trials = search_trials(results.trials)
    listed = board_trials(results.trials)
    uncertainty = trial_uncertainty(listed, results.predictions, metric)
    studies = ", ".join(f"{s.name} ({s.objective}, {s.mode})" for s in results.studies)
    lines = [
        (
            f"Study {studies}: ranked on validation; test {metric} at the selected epoch, "
            "gain over zero-shot in brackets"
        )
    ]
    for dataset in sorted(trials["dataset"].unique().to_list()):
        board = with_uncertainty(
            dataset_leaderboard(listed, dataset, results.param_names, metric), uncertainty, metric
        )
        params = searched_params(trials.filter(pl.col("dataset") == dataset), results.param_names)
        for cohort in sorted_cohorts(board["cohort"].unique().to_list()):
            part = board.filter(pl.col("cohort") == cohort)
            states = ", ".join(
                f"{(part['trial_status'] == s).sum()} {s}"
                for s in TRIAL_OUTCOMES
                if (part["trial_status"] == s).sum()
            )
            zeroshot = part[f"zeroshot_test_{metric}"].drop_nulls()
            zs_text = format_cell(zeroshot[0], "") if zeroshot.len() else "—"
            completed = part.filter(pl.col("trial_status") == COMPLETED)
            kept = stage1_alone_text(completed)
            lines.append(f"{dataset}{cohort_title(cohort)}: {states}; zero-shot test {zs_text}{kept}")
            ranked = completed.head(top)
            for row in ranked.iter_rows(named=True):
                lines.append("  " + short_row(row, params, metric))
            if ranked.height == 0:
                lines += _failure_lines(part)
            paper = part.filter(pl.col(PAPER_POINT_COLUMN) != "")
            for row in paper.iter_rows(named=True):
                if row["trial_status"] != COMPLETED or row["rank"] is None or row["rank"] > top:
                    lines.append("  " + short_row(row, params, metric))
    return "\n".join(lines)


def stage1_alone_text(completed: pl.DataFrame) -> str:
    """'; K of N completed kept stage 1 alone' (selected epoch 0), or '' without completed trials."""
    if completed.height == 0 or "selected_epoch" not in completed.columns:
        return ""
    kept = int((completed["selected_epoch"] == 0).sum())
    return f"; {kept} of {completed.height} completed trials kept stage 1 alone"


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
            mark = f" {row[PAPER_POINT_COLUMN]}" if row[PAPER_POINT_COLUMN] else ""
            lines.append(
                f"  #{row['rank']} datasets {row['coverage']}, mean rank "
                f"{row['mean_rank']:.2f}, mean gain {gain} [{row['configuration']}]{mark}"
            )
    return "\n".join(lines)


def short_row(row: dict, params: Sequence[str], metric: str) -> str:
    config = ", ".join(f"{p}={format_cell(row.get(p), p)}" for p in params)
    mark = f" {row[PAPER_POINT_COLUMN]}" if row[PAPER_POINT_COLUMN] else ""
    if row["trial_status"] != COMPLETED:
        return f"{row['trial']} {row['trial_status']}: {row['note']} [{config}]{mark}"
    test = format_cell(row[f"test_{metric}"], "")
    gain = format_cell(row[f"gain_{metric}"], "gain")
    objective = format_cell(row[OBJECTIVE_SELECTED], "")
    low, high = (row.get(c) for c in ci_columns(metric))
    if low is not None and high is not None:
        test += f" [95% CI over test images {format_cell(low, '')}, {format_cell(high, '')}]"
    if row.get("vs_zeroshot"):
        gain += f", {row['vs_zeroshot']} vs zero-shot"
    if row.get("vs_paper_hparams"):
        gain += f", {row['vs_paper_hparams']} vs paper's hyperparameters"
    if row.get("vs_reference_variant"):
        gain += f", {row['vs_reference_variant']} vs the reference variant"
    # Selection kept stage 1 alone: configurations whose stage 2 lost to their teacher can tie.
    kept = " (stage 1 alone)" if row.get("selected_epoch") == 0 else ""
    place = f"#{row['rank']}" if row["rank"] is not None else "unranked"
    return f"{place} {row['trial']}: test {test} ({gain}), val {objective}{kept} [{config}]{mark}"
