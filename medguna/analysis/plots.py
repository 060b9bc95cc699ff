"""Figures of a study (matplotlib, Agg): one PNG per question a reader asks.

- history_*: did the search improve? validation objective per trial with the running best;
- curves_*: how did trials learn? validation objective per epoch, coloured by trial state;
- params_*: which settings help? objective against each searched hyperparameter;
- zeroshot_vs_adapted_*: does adaptation beat zero-shot on test? per dataset.
Every title carries the cohort label when the data is synthetic or the model is test-size.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on study machines; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.ticker import MaxNLocator

from medguna.analysis.cohorts import cohort_title
from medguna.analysis.configurations import searched_params
from medguna.analysis.leaderboards import with_gains
from medguna.results import (
    COMPLETED,
    FAILED,
    INCOMPLETE,
    OBJECTIVE_BEST_SO_FAR,
    PAPER_POINT,
    STOPPED_EARLY,
)

STATE_STYLE = {
    COMPLETED: {"color": "tab:blue", "marker": "o", "label": "completed"},
    STOPPED_EARLY: {"color": "tab:orange", "marker": "v", "label": "stopped early (ASHA)"},
    INCOMPLETE: {"color": "tab:gray", "marker": "s", "label": "incomplete"},
    FAILED: {"color": "tab:red", "marker": "x", "label": "failed"},
}
DPI = 110


def _groups(trials: pl.DataFrame) -> list[tuple[str, str, str, pl.DataFrame]]:
    """(dataset, cohort, objective, rows) for each comparable set of trials."""
    out = []
    for (dataset, cohort, objective), part in trials.group_by(
        ["dataset", "cohort", "study_objective"], maintain_order=True
    ):
        out.append((str(dataset), str(cohort), str(objective), part.sort("trial_number")))
    return sorted(out, key=lambda g: (g[0], g[1], g[2]))


def _stem(kind: str, dataset: str, cohort: str, objective: str, several_objectives: bool) -> str:
    suffix = f"_{objective}" if several_objectives else ""
    return f"{kind}_{dataset}_{cohort}{suffix}"


TITLE_CHARS = 64  # a title line longer than this is wrapped: a 4.5-inch figure clips it otherwise


def _save(fig: plt.Figure, path: Path) -> Path:
    # Figures are made with layout="constrained", which keeps titles and labels inside the canvas.
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def wrap_title(text: str, width: int = TITLE_CHARS) -> str:
    """Each line of `text` wrapped to `width` characters, so no title runs past the figure."""
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def _title(text: str, cohort: str, width: int = TITLE_CHARS) -> str:
    """Plot title with the cohort warning on its own line, so it is never cut off."""
    label = cohort_title(cohort).strip()
    return wrap_title(f"{text}\n{label}" if label else text, width)


def _studies(rows: pl.DataFrame) -> str:
    return ", ".join(sorted(rows["study"].unique().to_list()))


def plot_history(rows: pl.DataFrame, dataset: str, cohort: str, objective: str, path: Path) -> Path:
    """Objective per trial in launch order, the running best of completed trials, and the
    paper's configuration marked."""
    maximize = rows["study_mode"][0] != "min"
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for state, style in STATE_STYLE.items():
        part = rows.filter(pl.col("trial_status") == state)
        if part.height == 0:
            continue
        # Completed trials show their ranked value; the others the best value they were judged by
        # before stopping (stage 1 alone included where it competes, as for the ranked value).
        column = "objective_selected" if state == COMPLETED else OBJECTIVE_BEST_SO_FAR
        values = part[column].to_numpy().astype(float)
        ax.scatter(
            part["trial_number"].to_numpy(),
            values,
            color=style["color"],
            marker=style["marker"],
            label=f"{style['label']} ({part.height})",
            zorder=3,
        )
    done = rows.filter(pl.col("trial_status") == COMPLETED)
    if done.height:
        values = done["objective_selected"].to_numpy().astype(float)
        running = np.fmax.accumulate(values) if maximize else np.fmin.accumulate(values)
        ax.step(
            done["trial_number"].to_numpy(),
            running,
            where="post",
            color="black",
            label="running best (completed)",
            zorder=2,
        )
    reference = rows.filter(pl.col(PAPER_POINT) & (pl.col("trial_status") == COMPLETED))
    if reference.height:
        ax.scatter(
            reference["trial_number"].to_numpy(),
            reference["objective_selected"].to_numpy().astype(float),
            marker="*",
            s=260,
            facecolor="none",
            edgecolor="green",
            linewidth=1.5,
            zorder=4,
            label="paper's hyperparameters",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number (launch order)")
    ax.set_ylabel(f"{objective} ({'higher' if maximize else 'lower'} is better)")
    ax.set_title(
        _title(f"{dataset}: optimisation history, study {_studies(rows)}", cohort), fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


STATE_LINE = {COMPLETED: "-", STOPPED_EARLY: "--", INCOMPLETE: ":", FAILED: ":"}
TRIAL_MARKERS = "osD^vP*Xh<>p"
DODGE = 0.12  # widest sideways shift of a trial's points, so equal curves stay visible


def trial_curves(epochs: pl.DataFrame, objective: str) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(trial, state, epochs, values) per trial in launch order. Epoch 0 is stage 1 alone (the
    teacher on validation, `stage1_<objective>`), drawn where the trial recorded it: selection can
    keep that epoch, so a curve without it hides a trial's selected point."""
    stage1 = f"stage1_{objective}"
    out = []
    for (trial,), part in epochs.filter(pl.col("epoch").is_not_null()).sort("trial_number").group_by(
        "trial", maintain_order=True
    ):
        part = part.sort("epoch")
        x = part["epoch"].to_numpy().astype(float)
        y = part["objective_this_epoch"].to_numpy().astype(float)
        if stage1 in part.columns and part[stage1].drop_nulls().len():
            x = np.concatenate([[0.0], x])
            y = np.concatenate([[float(part[stage1].drop_nulls()[0])], y])
        out.append((str(trial), str(part["trial_status"][0]), x, y))
    return out


def short_trial(trial: str) -> str:
    """t0003 of t0003_a1b2c3d4: the number a reader matches against the leaderboard."""
    return trial.split("_", 1)[0]


def plot_curves(
    epochs: pl.DataFrame, dataset: str, cohort: str, objective: str, path: Path
) -> Path:
    """Validation objective per epoch for every trial, one labelled line each (line style says how
    the trial ended); trials with the same curve are dodged sideways and named together."""
    curves = trial_curves(epochs, objective)
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    first_of: dict[tuple, str] = {}
    for i, (trial, state, x, y) in enumerate(curves):
        same = first_of.setdefault((tuple(x), tuple(np.round(y, 9))), trial)
        shift = 0.0 if len(curves) < 2 else DODGE * (2 * i / (len(curves) - 1) - 1)
        label = f"{short_trial(trial)} ({STATE_STYLE.get(state, STATE_STYLE[INCOMPLETE])['label']})"
        if same != trial:
            label += f", same curve as {short_trial(same)}"
        ax.plot(x + shift, y, linestyle=STATE_LINE.get(state, ":"), marker=TRIAL_MARKERS[i % len(TRIAL_MARKERS)],
                markersize=5, alpha=0.8, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = stage 1 alone; points shifted sideways so equal curves stay visible)")
    ax.set_ylabel(objective)
    ax.set_title(_title(f"{dataset}: validation curves per trial", cohort), fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _is_categorical(values: pl.Series) -> bool:
    # Floats (entropy_weight, learning rates) sit on a numeric axis even when few trials sampled
    # them: as box-plot levels they would be labelled 0.2613878991046221.
    if values.dtype.is_float():
        return False
    return values.dtype == pl.String or values.dtype == pl.Boolean or values.n_unique() <= 6


def plot_params(
    rows: pl.DataFrame, params: Sequence[str], dataset: str, cohort: str, objective: str, path: Path
) -> Path:
    """Objective of completed trials against each searched parameter (box plot for few levels,
    scatter for continuous values); the paper's configuration is a green star."""
    done = rows.filter(pl.col("trial_status") == COMPLETED)
    params = [p for p in params if p in done.columns] or ["seed"]
    columns = min(3, len(params))
    lines = -(-len(params) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False,
                             layout="constrained")
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for ax, param in zip(axes.flat, params):
        values = done[param]
        objective_values = done["objective_selected"].to_numpy().astype(float)
        reference = done[PAPER_POINT].to_numpy()
        if _is_categorical(values):
            levels = sorted(values.drop_nulls().unique().to_list(), key=lambda v: (str(type(v)), v))
            data = [objective_values[(values == level).to_numpy()] for level in levels]
            ax.boxplot(data, tick_labels=[str(level) for level in levels], showfliers=False)
            positions = np.array(
                [levels.index(v) + 1 if v in levels else np.nan for v in values.to_list()],
                dtype=float,
            )
            jitter = positions + rng.uniform(-0.12, 0.12, size=positions.size)
            ax.scatter(jitter, objective_values, s=14, alpha=0.7, color="tab:blue")
            ax.scatter(
                jitter[reference], objective_values[reference], marker="*", s=160, color="green"
            )
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        else:
            x = values.cast(pl.Float64).to_numpy()
            ax.scatter(x, objective_values, s=16, alpha=0.8, color="tab:blue")
            ax.scatter(x[reference], objective_values[reference], marker="*", s=160, color="green")
            if np.nanmin(x) > 0 and np.nanmax(x) / np.nanmin(x) > 50:
                ax.set_xscale("log")  # e.g. learning rates spanning decades
        ax.set_xlabel(param)
        ax.set_ylabel(objective, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params) :]:
        ax.axis("off")
    fig.suptitle(
        _title(
            f"{dataset}: {objective} by hyperparameter ({done.height} completed "
            "trials; ★ = paper's hyperparameters)",
            cohort,
        ),
        fontsize=10,
    )
    return _save(fig, path)


def _bar_errors(heights: np.ndarray, lows: list, highs: list) -> np.ndarray:
    """matplotlib's yerr (2 x n, distances below and above) from interval ends; 0 where unknown."""
    low = np.array([np.nan if v is None else v for v in lows], dtype=float)
    high = np.array([np.nan if v is None else v for v in highs], dtype=float)
    return np.nan_to_num(np.vstack([heights - low, high - heights]), nan=0.0).clip(min=0.0)


def plot_zeroshot_vs_adapted(trials: pl.DataFrame, cohort: str, metric: str, path: Path,
                             intervals: pl.DataFrame | None = None) -> Path:
    """Per dataset: zero-shot test metric, the paper's configuration, the configuration the
    study selected (best validation objective), each with its 95% bootstrap interval over the
    test images (`intervals`: ci_low/ci_high and zeroshot_ci_low/high per trial), and every
    completed trial as a dot."""
    done = with_gains(
        trials.filter((pl.col("cohort") == cohort) & (pl.col("trial_status") == COMPLETED))
    )
    key = ["study", "dataset", "trial"]
    wanted = ("ci_low", "ci_high", "zeroshot_ci_low", "zeroshot_ci_high")
    if intervals is not None and intervals.height:
        done = done.join(intervals.select(*key, *(c for c in wanted if c in intervals.columns)),
                         on=key, how="left")
    done = done.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in wanted if c not in done.columns)
    datasets = sorted(done["dataset"].unique().to_list())
    fig, ax = plt.subplots(figsize=(2.0 * len(datasets) + 4.5, 4.5), layout="constrained")
    width = 0.25
    names = ("zero-shot", "paper's hyperparameters", "selected by validation")
    bars: dict[str, list] = {n: [] for n in names}
    lows: dict[str, list] = {n: [] for n in names}
    highs: dict[str, list] = {n: [] for n in names}
    for dataset in datasets:
        part = done.filter(pl.col("dataset") == dataset)
        maximize = part["study_mode"][0] != "min"
        best = part.sort(["objective_selected", "trial_number"], descending=[maximize, False],
                         nulls_last=True).row(0, named=True)
        reference = part.filter(pl.col(PAPER_POINT))
        ref = reference.row(0, named=True) if reference.height else {}
        # Zero-shot is the same model on every trial's images: the selected trial's row holds it.
        picked = {
            "zero-shot": (best[f"zeroshot_test_{metric}"], best["zeroshot_ci_low"], best["zeroshot_ci_high"]),
            "paper's hyperparameters": (ref.get(f"test_{metric}"), ref.get("ci_low"), ref.get("ci_high")),
            "selected by validation": (best[f"test_{metric}"], best["ci_low"], best["ci_high"]),
        }
        for name, (value, low, high) in picked.items():
            bars[name].append(value)
            lows[name].append(low)
            highs[name].append(high)
    x = np.arange(len(datasets))
    colours = ("tab:gray", "tab:green", "tab:blue")
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        heights = np.array([np.nan if h is None else h for h in bars[name]], dtype=float)
        drawn = ax.bar(x + (i - 1) * width, heights, width, label=name, color=colour, alpha=0.85,
                       yerr=_bar_errors(heights, lows[name], highs[name]), capsize=3,
                       error_kw={"elinewidth": 1, "ecolor": "black"})
        ax.bar_label(drawn, labels=["" if np.isnan(h) else f"{h:.3f}" for h in heights], fontsize=7,
                     label_type="center", color="white")
    for j, dataset in enumerate(datasets):
        values = done.filter(pl.col("dataset") == dataset)[f"test_{metric}"].to_numpy()
        ax.scatter(
            np.full(values.size, x[j] + 1.6 * width),
            values,
            s=12,
            color="black",
            alpha=0.6,
            label="every completed trial" if j == 0 else None,
        )
    ax.set_xticks(x, datasets)
    ax.set_xlim(-0.6, len(datasets) - 0.2)
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="bars: 95% bootstrap interval\nover the test images", title_fontsize=7)
    ax.set_title(_title(f"Zero-shot vs adapted: test {metric} per dataset", cohort), fontsize=10)
    return _save(fig, path)


def write_figures(
    trials: pl.DataFrame,
    epochs: pl.DataFrame,
    param_names: Sequence[str],
    out_dir: Path,
    metric: str = "balanced_accuracy",
    intervals: pl.DataFrame | None = None,
) -> list[Path]:
    """Every figure for a results set; returns the PNG paths in reading order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    several = trials["study_objective"].n_unique() > 1
    paths: list[Path] = []
    for cohort in sorted(trials.filter(pl.col("trial_status") == COMPLETED)["cohort"].unique()):
        paths.append(
            plot_zeroshot_vs_adapted(
                trials, cohort, metric, out_dir / f"zeroshot_vs_adapted_{cohort}.png", intervals
            )
        )
    for dataset, cohort, objective, rows in _groups(trials):
        tail = _stem("", dataset, cohort, objective, several)  # "_<dataset>_<cohort>[_<obj>]"
        paths.append(plot_history(rows, dataset, cohort, objective, out_dir / f"history{tail}.png"))
        part = epochs.filter(
            (pl.col("dataset") == dataset)
            & (pl.col("cohort") == cohort)
            & (pl.col("study_objective") == objective)
        )
        paths.append(plot_curves(part, dataset, cohort, objective, out_dir / f"curves{tail}.png"))
        if rows.filter(pl.col("trial_status") == COMPLETED).height:
            params = searched_params(rows, param_names)
            paths.append(
                plot_params(rows, params, dataset, cohort, objective, out_dir / f"params{tail}.png")
            )
    return paths
