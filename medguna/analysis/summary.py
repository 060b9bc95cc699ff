"""The answer at a glance: per dataset (and cohort), the configuration the study selected, its test
score with interval, its gain over zero-shot and over the paper's hyperparameters with their
verdicts, and how many trials ran; then what the study searched and with what budget.

report.html opens with this; `summary.csv` / `.md` hold the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from medguna.analysis.cohorts import sorted_cohorts
from medguna.analysis.leaderboards import PAPER_POINT_COLUMN
from medguna.analysis.uncertainty import ci_columns as uncertainty_ci_columns
from medguna.results import (
    COMPLETED,
    CONFIRM_STAGE,
    FAILED,
    INCOMPLETE,
    OBJECTIVE_SELECTED,
    SELECTED_EPOCH,
    STOPPED_EARLY,
)

# The result columns this summary and the report's leaderboards read, named once here (from the
# modules that define them): a rename of the results vocabulary is a change of these lines only.
PAPER_MARK = PAPER_POINT_COLUMN  # the leaderboards' ★ column (the paper's hyperparameters)
VS_ZEROSHOT = "vs_zeroshot"  # verdict text against zero-shot, e.g. "better (p=0.003, 12 discordant)"
VS_PAPER = "vs_paper_hparams"  # verdict text against the paper's hyperparameters
ci_columns = uncertainty_ci_columns  # (low, high) of a trial's test metric over test images


def confirmed_columns(metric: str) -> tuple[str, str, str]:
    """The confirmed leaderboard's seeds count, mean test metric, and its interval as text (which
    says what it covers: seeds)."""
    return "n", f"test_{metric}_mean", f"test_{metric}_over_seeds"


# One line on what each dimension a study may search does, for readers of the report.
DIMENSION_HELP = {
    "adapter_width": "hidden width of the classification adapter; 0 = one linear map (the paper's), "
                     "> 0 = a bottleneck with LayerNorm and GELU",
    "prompt_length": "learnable visual prompt tokens given to the image encoder in stage 2; "
                     "0 = none (stage 2 tunes the adapter alone)",
    "entropy_weight": "weight of stage 2's entropy term on the confident rows' mean prediction; "
                      "positive pushes them to agree on one class, negative = a diversity term "
                      "that keeps classes balanced",
    "description_source": "which class sentences stage 1 trains the adapter on (LLM-written, "
                          "curated, templates or the class name)",
    "ce_weight": "weight of the cross-entropy on the teacher's pseudo-labels in stage 2",
    "confident_ratio": "share of each batch, the most confident rows, that the entropy term sees",
    "label_smoothing": "label smoothing of stage 2's cross-entropy",
    "stage1_steps": "training steps of stage 1 (adapter on text embeddings)",
    "stage1_noise_std": "Gaussian noise added to text embeddings in stage 1",
    "stage2_lr": "stage 2's learning rate",
    "stage2_optimizer": "stage 2's optimiser (sgd, adamw)",
    "stage2_epochs": "stage 2's epochs over the unlabelled training images",
    "strong_view_augmentation": "the student's strong view: the paper's jitter-and-blur, or "
                                "crop_flip (crop and flip only)",
    "batch_size": "images per stage-2 step",
    "method_variant": "the method's variant (medguna or the paper's reference code)",
    "preprocessing": "image preprocessing",
    "text_wrapper": "how class sentences are wrapped before encoding",
}


def configuration_text(row: dict, params: Sequence[str]) -> str:
    from medguna.analysis.tables import format_cell

    return ", ".join(f"{p}={format_cell(row.get(p), p)}" for p in params)


def answer_table(boards: dict[str, pl.DataFrame], all_trials: pl.DataFrame,
                 params_by_dataset: dict[str, list[str]], metric: str,
                 confirmed: pl.DataFrame | None = None, order: Sequence[str] = ()) -> pl.DataFrame:
    """One row per dataset and cohort: the rank-1 trial of its leaderboard (best validation
    objective), its test metric and interval, gains and verdicts, the trial counts, and the
    confirmation stage's mean over fresh seeds of the same configuration where it ran. Datasets
    come in `order` (the studies' own order), any others after them alphabetically."""
    low, high = ci_columns(metric)
    records = []
    rank = {d: i for i, d in enumerate(dict.fromkeys(order))}
    for dataset, board in sorted(boards.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])):
        for cohort in sorted_cohorts(board["cohort"].unique().to_list()):
            part = board.filter(pl.col("cohort") == cohort)
            states = {s: int((part["trial_status"] == s).sum())
                      for s in (COMPLETED, STOPPED_EARLY, FAILED, INCOMPLETE)}
            done = part.filter(pl.col("trial_status") == COMPLETED)
            paper = done.filter(pl.col(PAPER_MARK) != "") if PAPER_MARK in done.columns else done.head(0)
            record = {
                "dataset": dataset, "cohort": cohort, "trials": part.height,
                "completed": states[COMPLETED], "stopped_early": states[STOPPED_EARLY],
                "failed": states[FAILED], "incomplete": states[INCOMPLETE],
                "stage1_alone": int((done[SELECTED_EPOCH] == 0).sum()) if done.height else 0,
                "confirm_trials": _confirm_count(all_trials, dataset, cohort),
            }
            if done.height:
                best = done.row(0, named=True)
                paper_test = paper[f"test_{metric}"][0] if paper.height else None
                test = best[f"test_{metric}"]
                record.update({
                    "trial": best["trial"],
                    "configuration": configuration_text(best, params_by_dataset.get(dataset, [])),
                    "tied_first": int((done["rank"] == 1).sum()),
                    SELECTED_EPOCH: best[SELECTED_EPOCH],
                    OBJECTIVE_SELECTED: best[OBJECTIVE_SELECTED],
                    "is_paper_point": bool(best.get(PAPER_MARK)),
                    f"test_{metric}": test, low: best.get(low), high: best.get(high),
                    f"zeroshot_test_{metric}": best[f"zeroshot_test_{metric}"],
                    "gain_vs_zeroshot": best[f"gain_{metric}"],
                    VS_ZEROSHOT: best.get(VS_ZEROSHOT) or None,
                    f"paper_test_{metric}": paper_test,
                    "gain_vs_paper": None if paper_test is None or test is None else test - paper_test,
                    VS_PAPER: best.get(VS_PAPER) or None,
                })
                record.update(_confirmed(confirmed, dataset, cohort, best,
                                         params_by_dataset.get(dataset, []), metric))
            records.append(record)
    return pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()


def _confirmed(confirmed: pl.DataFrame | None, dataset: str, cohort: str, best: dict,
               params: Sequence[str], metric: str) -> dict:
    """The confirmed leaderboard's row of the selected configuration: seeds, mean and t interval."""
    if confirmed is None or confirmed.height == 0 or "dataset" not in confirmed.columns:
        return {}
    rows = confirmed.filter((pl.col("dataset") == dataset) & (pl.col("cohort") == cohort))
    for p in params:
        if p in rows.columns:
            rows = rows.filter(pl.col(p) == best.get(p))
    if rows.height == 0:
        return {}
    row = rows.row(0, named=True)
    seeds, mean, interval = confirmed_columns(metric)
    return {"confirm_seeds": row.get(seeds), f"confirm_test_{metric}_mean": row.get(mean),
            "confirm_interval": row.get(interval)}


def _confirm_count(trials: pl.DataFrame, dataset: str, cohort: str) -> int:
    if "stage" not in trials.columns:
        return 0
    return trials.filter((pl.col("dataset") == dataset) & (pl.col("cohort") == cohort)
                         & (pl.col("stage") == CONFIRM_STAGE)).height


def domain_text(spec: dict) -> str:
    """A search-space entry as a reader writes it: `0, 64, 256` or `-1.5 to 3.0 (log)`."""
    kind = spec.get("type")
    if kind == "categorical":
        return ", ".join(str(c) for c in spec.get("choices", []))
    if kind in ("float", "log", "int"):
        step = f", step {spec['step']}" if spec.get("step") not in (None, 1) else ""
        scale = " (log scale)" if kind == "log" else ""
        return f"{spec.get('low')} to {spec.get('high')}{step}{scale}"
    return str(spec)
