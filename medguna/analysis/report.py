"""The study report: every table and figure under one folder, linked from `index.md`, and all of
it in one self-contained page, `report.html` (medguna.analysis.html_report).

`write_report` is what the study runner calls at the end of a study; the few lines it prints then
are medguna.analysis.console_text's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from medguna.analysis.cohorts import cohort_heading, cohort_title, sorted_cohorts
from medguna.analysis.configurations import searched_params
from medguna.analysis.confirmed import board_trials, confirmed_leaderboard, search_trials
from medguna.analysis.console_text import stage1_alone_text
from medguna.analysis.effects import effect_table, kept_stage2
from medguna.analysis.html_report import TableSection, write_html_report
from medguna.analysis.importance import param_importance
from medguna.analysis.leaderboards import (
    PAPER_POINT_COLUMN,
    across_leaderboard,
    dataset_leaderboard,
    seeds_table,
)
from medguna.analysis.loading import ResultSet, load_results
from medguna.analysis.pareto import pareto_table, plot_pareto
from medguna.analysis.plots import write_figures
from medguna.analysis.reliability import plot_reliability, with_cohort
from medguna.analysis.selection_check import selection_check
from medguna.analysis.stats import SEED_BOOTSTRAP_MIN
from medguna.analysis.summary import answer_table
from medguna.analysis.tables import format_cell, markdown_table, write_table
from medguna.analysis.uncertainty import (
    ci_columns,
    leaderboard_uncertainty_columns,
    predictions_on_test,
    trial_uncertainty,
    with_uncertainty,
)
from medguna.results import (
    CALIBRATION_METRICS,
    COMPLETED,
    DEFAULT_METRIC,
    DESIGN_DIMENSIONS,
    SELECTED_EPOCH,
    TRIAL_OUTCOMES,
)

StudyDirs = str | Path | Sequence[str | Path]
SUMMARY_NOTE = (
    "Selected = best validation objective among completed search trials; test {metric} at the selected "
    "epoch (0: stage 1 alone) with its 95% bootstrap interval over test images; gains and verdicts "
    "against zero-shot and the paper's hyperparameters are paired tests on the same test images; the "
    "confirmation's mean is over fresh seeds. summary.csv holds every column (trial counts, zero-shot "
    "and paper scores, ties)."
)


@dataclass
class Report:
    """What a report wrote: tables by file stem (with their titles, columns and notes), figure
    paths, notes, the index and the HTML page."""

    out_dir: Path
    index: Path
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    sections: dict[str, TableSection] = field(default_factory=dict)
    html: Path | None = None
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: pl.DataFrame | None = None  # the answer per dataset (medguna.analysis.summary)


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
    shown = ["rank", "trial", "trial_status", PAPER_POINT_COLUMN]
    params = [
        c
        for c in board.columns
        if c
        not in ("cohort", "study", "dataset", "rank", "trial", "trial_status", PAPER_POINT_COLUMN, "seed")
        and board.columns.index(c) < board.columns.index("seed")
    ]
    return [
        *shown,
        *params,
        "seed",
        "objective_selected",
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
    # Confirmation reruns (stage "confirm") feed the seed tables only: the search's leaderboards,
    # effects and figures rank what the sampler proposed, one run each.
    all_trials, names = results.trials, results.param_names
    trials, epochs = search_trials(all_trials), search_trials(results.epochs)
    objective_note = (
        "Ranked by the study objective on validation (completed trials only); test "
        "metrics are those of the selected epoch (selected_epoch 0: stage 1 alone, when no "
        f"stage-2 epoch beat the teacher on validation); gain = test {metric} minus "
        "zero-shot test. Stopped-early, failed and incomplete trials are listed "
        "below the ranked ones, unranked."
    )
    listed = board_trials(all_trials)  # the search's trials and the baseline arm's (not ranked)
    uncertainty = trial_uncertainty(listed, results.predictions, metric, notes=report.notes)
    reliability: list[Path] = []
    boards: dict[str, pl.DataFrame] = {}
    for dataset in sorted(trials["dataset"].unique().to_list()):
        board = with_uncertainty(dataset_leaderboard(listed, dataset, names, metric), uncertainty, metric)
        boards[dataset] = board
        _write(
            report,
            board,
            f"leaderboard_{dataset}",
            f"Leaderboard: {dataset}",
            [
                *_leaderboard_columns(board, metric),
                *leaderboard_uncertainty_columns(board, metric),
                *(f"{kind}_{m}" for m in CALIBRATION_METRICS for kind in ("test", "zeroshot_test")),
            ],
            [objective_note, UNCERTAINTY_NOTE,
             *([f"{kept.removeprefix('; ')} (selected_epoch 0)."]
               if (kept := stage1_alone_text(board.filter(pl.col("trial_status") == COMPLETED))) else [])],
        )
        reliability += _reliability_figures(board, results.predictions, out_dir / "figures")
    checks = selection_check(trials, epochs, metric)
    _write(
        report,
        _with_schema(checks, "no completed trial"),
        "selection_check",
        "Does label-free selection work? Criteria against test " + metric,
        notes=[SELECTION_NOTE.format(metric=metric)],
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
    completed = trials.filter(pl.col("trial_status") == COMPLETED)
    stage1_alone = completed.height - kept_stage2(completed).height
    for param in DESIGN_DIMENSIONS:
        table = _by_trials(effect_table(trials, param, metric),
                           effect_table(trials, param, metric, stage2_only=True))
        _write(
            report,
            _with_schema(table, f"no completed trial with {param}"),
            f"effects_{param}",
            f"Effect of {param}",
            notes=[
                (
                    "Completed trials only: median, quartiles (linear interpolation) and IQR "
                    "of the validation objective and of the test gain over zero-shot; a level "
                    "with one trial shows no quartiles (—), its n says why. "
                    f"{stage1_alone} of {completed.height} completed trials kept stage 1 alone "
                    "(selected epoch 0: stage 2 thrown away), counted per level in "
                    "n_stage1_alone; the rows with trials = kept stage 2 repeat the table over "
                    "the trials whose selected epoch is a stage-2 epoch, where stage-2 "
                    "hyperparameters shaped the result."
                )
            ],
        )
    _write_importance(report, results)
    seeds = seeds_table(all_trials, names, metric)
    _write(
        report,
        _with_schema(seeds, "no configuration ran with several seeds"),
        "seeds",
        "Seed repeats: mean and spread over seeds",
        notes=[SEEDS_NOTE + " Search and confirmation runs of a configuration together."],
    )
    confirmed = confirmed_leaderboard(all_trials, names, metric)
    _write(
        report,
        _with_schema(confirmed, "no confirmation stage ran (study.confirm_top=0) or it has not finished"),
        "leaderboard_confirmed",
        "Confirmed leaderboard: the best configurations rerun with fresh seeds",
        notes=[
            ("Confirmation runs only (<dataset>_confirm/): per configuration, the mean and "
            "spread over its seeds of test "
            f"{metric}, of its gain over zero-shot and of the validation objective; ranked by "
            "mean validation objective. " + SEEDS_NOTE)
        ],
    )
    report.summary = answer_table(
        boards, all_trials,
        {d: searched_params(trials.filter(pl.col("dataset") == d), names) for d in boards}, metric,
        confirmed, [d for s in results.studies for d in s.datasets])
    low, high = ci_columns(metric)
    write_table(_with_schema(report.summary, "no trial"), out_dir, "summary",
                "Summary: the selected configuration per dataset",
                columns=["cohort", "dataset", "trial", "configuration", SELECTED_EPOCH, f"test_{metric}", low, high,
                         "gain_vs_zeroshot", "vs_zeroshot", "gain_vs_paper", "vs_paper_hparams",
                         f"confirm_test_{metric}_mean", "confirm_interval", "completed", "stage1_alone"],
                notes=[SUMMARY_NOTE.format(metric=metric)])
    all_trials.write_csv(out_dir / "trials.csv")
    all_trials.write_parquet(out_dir / "trials.parquet")
    results.epochs.write_parquet(out_dir / "epochs.parquet")
    intervals = _headline_intervals(uncertainty, results.predictions, metric)
    report.figures = write_figures(trials, epochs, names, out_dir / "figures", metric, intervals)
    report.figures += reliability
    report.figures += plot_pareto(pareto_table(trials, epochs), out_dir / "figures")
    report.index.write_text(_index_text(report, results, metric))
    report.html = write_html_report(report, results, metric)
    return report


UNCERTAINTY_NOTE = (
    "test_<metric>_ci95_test_images_low/high: 95% stratified bootstrap interval over the test "
    "images (2000 resamples within each class) of the trial's test metric: test-image sampling "
    "only, not training randomness nor another draw. vs_zeroshot / vs_paper_hparams: the trial "
    "against zero-shot and against the paper's hyperparameters run in medguna's pipeline (★, not "
    "the reference implementation) on the same test images (vs_reference_variant: against the "
    "reference variant at the paper's point, where the study ran that baseline arm; its row is "
    "listed unranked), decided by an exact paired test at "
    "level 0.05: the sign-flip permutation test of the balanced-accuracy difference (exact over "
    "all sign patterns of the discordant images up to 20 of them, else 20000 seeded Monte-Carlo "
    "patterns with p = (1+k)/(1+N)), or exact McNemar when the headline metric is accuracy; "
    "*_discordant counts the images the two models disagree on (with 5 or fewer no exact test "
    "reaches p < 0.05). AUROC gets the paired bootstrap interval of its difference "
    "(*_auroc_diff_ci95_test_images_*) as a size only, never a verdict. Multiplicity: only the "
    "validation-selected trial (verdict_role = primary, the rank-1 row the study reports) gets "
    "better / worse / not distinguishable; every other row is exploratory, shown with its "
    "unadjusted p and no verdict. ece, brier: calibration of the test predictions (lower is "
    "better; ECE with 15 equal-width confidence bins)."
)
SEEDS_NOTE = (
    "Spread over seeds (<measure>_low_seeds/_high_seeds, text in <measure>_over_seeds): the "
    f"seeds' range below {SEED_BOOTSTRAP_MIN} seeds, else the 95% percentile bootstrap interval of "
    "the mean over seeds; both stay inside the observed values, so inside the metric's range. The "
    "seeds share one split and one test set: the spread covers training randomness only, not "
    "test-image sampling nor another draw of the data. 'seeds agree (zero width)' in seeds_note "
    "marks seeds that gave the same value, which says nothing of test-image sampling."
)
SELECTION_NOTE = (
    "Per dataset, across completed trials: Kendall's tau-b (scipy) between each criterion on "
    "validation at the trial's selected epoch and test {metric} at that epoch; picked = the trial "
    "with the best criterion; cost_vs_best = best test {metric} of any trial minus the picked "
    "trial's; cost_vs_labelled = the test {metric} of the trial picked by validation labels "
    "(val_balanced_accuracy) minus the picked trial's. Near-zero tau and large costs mean the "
    "label-free criterion does not find good configurations on this data."
)


def _headline_intervals(uncertainty: pl.DataFrame, predictions: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Per trial: the 95% bootstrap interval of its test metric (`ci_low`, `ci_high`) and of
    zero-shot's on the same images (`zeroshot_ci_*`), for the headline chart's error bars."""
    from medguna.analysis.paired import PAIRED_METRICS, bootstrap_ci

    low, high = ci_columns(metric)
    key = ["study", "dataset", "trial"]
    records = []
    if metric in PAIRED_METRICS:
        for (study, dataset, trial), (_, labels, probs) in predictions_on_test(predictions, "zeroshot").items():
            ci = bootstrap_ci(metric, labels, probs)
            records.append({"study": study, "dataset": dataset, "trial": trial,
                            "zeroshot_ci_low": ci.low, "zeroshot_ci_high": ci.high})
    frame = pl.DataFrame(records, schema={**{k: pl.String for k in key},
                                          "zeroshot_ci_low": pl.Float64, "zeroshot_ci_high": pl.Float64})
    if low in uncertainty.columns:
        adapted = uncertainty.select(*key, pl.col(low).alias("ci_low"), pl.col(high).alias("ci_high"))
        frame = adapted.join(frame, on=key, how="full", coalesce=True)
    return frame


def _by_trials(every: pl.DataFrame, stage2: pl.DataFrame) -> pl.DataFrame:
    """One table of both trial sets, told apart by a `trials` column after `cohort`."""
    parts = [frame.with_columns(pl.lit(label).alias("trials"))
             for label, frame in (("all completed", every), ("kept stage 2", stage2)) if frame.height]
    if not parts:
        return pl.DataFrame()
    table = pl.concat(parts, how="diagonal_relaxed")
    return table.select("cohort", "trials", *[c for c in table.columns if c not in ("cohort", "trials")])


def _reliability_figures(board: pl.DataFrame, predictions: pl.DataFrame, out_dir: Path) -> list[Path]:
    """A reliability diagram of each cohort's rank-1 trial (test split), with zero-shot's."""
    adapted, zeroshot = predictions_on_test(predictions, "adapted"), predictions_on_test(predictions, "zeroshot")
    paths = []
    for row in board.filter(pl.col("rank") == 1).unique("cohort", keep="first").iter_rows(named=True):
        key = (row["study"], row["dataset"], row["trial"])
        if key not in adapted:
            continue
        curves = {f"adapted ({row['trial']})": adapted[key][1:]}
        if key in zeroshot:
            curves["zero-shot"] = zeroshot[key][1:]
        title = with_cohort(f"Reliability, {row['dataset']} test: selected configuration", row["cohort"])
        paths.append(plot_reliability(curves, title, out_dir / f"reliability_{row['dataset']}_{row['cohort']}.png"))
    return paths


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
    report.sections[stem] = TableSection(stem, title, list(columns) if columns else None, list(notes))


def _write_importance(report: Report, results: ResultSet) -> None:
    trials = search_trials(results.trials)
    cohorts = trials.select("study", "dataset", "cohort").unique(["study", "dataset"])
    completed = trials.filter(pl.col("trial_status") == COMPLETED)
    by_dataset: dict[str, list[pl.DataFrame]] = {}
    notes: dict[str, list[str]] = {}
    for study in results.studies:
        for dataset in study.datasets:
            found = cohorts.filter((pl.col("study") == study.name) & (pl.col("dataset") == dataset))
            if found.height == 0:
                continue
            done = completed.filter((pl.col("study") == study.name) & (pl.col("dataset") == dataset))
            stage2_ids = set(kept_stage2(done)["trial_id"].drop_nulls().to_list())
            notes.setdefault(dataset, []).append(
                f"{study.name}: {done.height - len(stage2_ids)} of {done.height} completed trials "
                "kept stage 1 alone (selected epoch 0)")
            frames = by_dataset.setdefault(dataset, [])
            for label, ids in (("all completed", None), ("kept stage 2", stage2_ids)):
                result = param_importance(study, dataset, ids)
                if result.note:
                    notes[dataset].append(f"{study.name} ({label}): {result.note}")
                    report.notes.append(f"{study.name}/{dataset} ({label}): {result.note}")
                if result.table.height:
                    frames.append(
                        result.table.with_columns(
                            pl.lit(found["cohort"][0]).alias("cohort"),
                            pl.lit(label).alias("trials"),
                            pl.lit(study.name).alias("study"),
                        ).select("cohort", "trials", "study", "param", "importance", "n_trials", "evaluator")
                    )
    for dataset, frames in sorted(by_dataset.items()):
        frame = pl.concat(frames) if frames else pl.DataFrame()
        _write(
            report,
            _with_schema(frame, "; ".join(notes.get(dataset, []))),
            f"importance_{dataset}",
            f"Hyperparameter importance: {dataset}",
            notes=[
                ("From the exported Optuna study, full-budget trials only; trials = kept stage 2: "
                 "only the trials whose selected epoch is a stage-2 epoch."),
                *notes.get(dataset, []),
            ],
        )


def _state_counts(trials: pl.DataFrame) -> pl.DataFrame:
    confirmed = "stage" in trials.columns and trials["stage"].n_unique() > 1
    key = ["cohort", "study", "dataset", *(["stage"] if confirmed else [])]
    counts = trials.group_by(key).agg(
        *((pl.col("trial_status") == state).sum().alias(state) for state in TRIAL_OUTCOMES),
        pl.len().alias("trials"),
    )
    return counts.sort(key)


def _index_text(report: Report, results: ResultSet, metric: str) -> str:
    lines = ["# medguna study report", "", "The same report as one page: [report.html](report.html).", ""]
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
    lines += [("The answer per dataset (selected configuration, test score with interval, gains and "
              "verdicts): [summary.md](summary.md) · [CSV](summary.csv)."), ""]
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
    lines += _description_set_lines(results)
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


def _description_set_lines(results: ResultSet) -> list[str]:
    """Which LLM wrote each `set:NAME` a study used, so a row can be traced to its sentences."""
    rows = [(s.name, name, info) for s in results.studies
            for name, info in s.description_sets.items()]
    if not rows:
        return []
    lines = [
        "",
        "## Description sets",
        "",
        "| study | source | backend | model | prompt families | created | sentences sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for study, name, info in rows:
        cells = [study, f"set:{name}", info.get("backend"), info.get("model"),
                 ", ".join(info.get("prompt_families") or []), info.get("created_utc"),
                 str(info.get("descriptions_sha256", ""))[:16]]
        lines.append("| " + " | ".join(format_cell(c, "") for c in cells) + " |")
    return lines
