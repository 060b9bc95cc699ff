"""Per trial: a bootstrap interval of its test metrics over test images, and paired comparisons
against zero-shot and against the paper's hyperparameters (the ★ trial of the same study and
dataset: the paper's point run inside medguna's pipeline) and, where the study ran its baseline arm,
against the reference variant at the paper's point (`vs_reference_variant`), all on the trial's
own per-image test predictions (medguna.analysis.paired holds the statistics).

Multiplicity: a leaderboard holds many trials, and scanning them for one "better" is a multiple
comparison. Only the validation-selected trial of each dataset and cohort (rank 1: the one the
study reports) gets a verdict, its `primary` comparison at level 0.05; every other row is
`exploratory`: it shows its exact p-value but no better/worse word.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from medguna.analysis.paired import DEFAULT_RESAMPLES, PAIRED_METRICS, bootstrap_ci, compare
from medguna.results import BASELINE_STAGE, COMPLETED, PAPER_POINT, SEARCH_STAGE

KEY = ("study", "dataset", "trial")
CI_METRICS = PAIRED_METRICS  # metrics with a vectorised bootstrap
AGAINST = ("zeroshot", "paper_hparams", "reference_variant")  # vs_<against>_* columns
PRIMARY, EXPLORATORY = "primary", "exploratory"
CI_SUFFIX = "ci95_test_images"  # what the test-metric intervals resample


def ci_columns(metric: str) -> tuple[str, str]:
    """The low/high column names of a test metric's bootstrap interval over test images."""
    return f"test_{metric}_{CI_SUFFIX}_low", f"test_{metric}_{CI_SUFFIX}_high"


def _class_columns(part: pl.DataFrame, dataset: str) -> list[str]:
    """This dataset's prob_<class> columns in label order (a results set of several datasets holds
    every dataset's class columns, null outside their own rows)."""
    from medguna.data.datasets import DATASETS
    from medguna.trial.predictions import prob_column

    if dataset in DATASETS:
        return [prob_column(c) for c in DATASETS[dataset].classes]
    return [c for c in part.columns if c.startswith("prob_") and part[c].null_count() == 0]


def predictions_on_test(predictions: pl.DataFrame, model: str) -> dict[tuple, tuple[list, np.ndarray, np.ndarray]]:
    """(study, dataset, trial) -> (image ids, labels, probs) of `model` on the test split,
    sorted by image id so two trials of a dataset line up image by image."""
    if predictions.height == 0:
        return {}
    rows = predictions.filter((pl.col("model") == model) & (pl.col("split") == "test"))
    out = {}
    for key, part in rows.sort("image_id").group_by(list(KEY), maintain_order=True):
        out[tuple(key)] = (part["image_id"].to_list(), part["label"].to_numpy(),
                           part.select(_class_columns(part, key[1])).to_numpy())
    return out


def _prefixed(prefix: str, row: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in row.items()}


def trial_uncertainty(trials: pl.DataFrame, predictions: pl.DataFrame,
                      metric: str = "balanced_accuracy", n_resamples: int = DEFAULT_RESAMPLES,
                      notes: list[str] | None = None) -> pl.DataFrame:
    """One row per completed trial with test predictions: `test_<m>_ci95_test_images_low/high`
    for each bootstrapped metric, `vs_zeroshot_*` and `vs_paper_hparams_*` (discordant images,
    McNemar counts and p, sign-flip p of balanced accuracy, paired differences with their
    interval over test images, the test's verdict before the multiplicity rule)."""
    adapted = predictions_on_test(predictions, "adapted")
    zeroshot = predictions_on_test(predictions, "zeroshot")
    completed = trials.filter(pl.col("trial_status") == COMPLETED)
    stage = pl.col("stage").fill_null(SEARCH_STAGE) if "stage" in completed.columns else pl.lit(SEARCH_STAGE)
    # Per (study, dataset): the trial each comparison is against, when there is one.
    against = {
        "vs_paper_hparams": completed.filter(pl.col(PAPER_POINT) & (stage == SEARCH_STAGE)),
        "vs_reference_variant": completed.filter(stage == BASELINE_STAGE),
    }
    baselines = {name: {(r["study"], r["dataset"]): (r["study"], r["dataset"], r["trial"])
                        for r in rows.iter_rows(named=True)} for name, rows in against.items()}
    verdict_metric = "accuracy" if metric == "accuracy" else "balanced_accuracy"
    records = []
    for row in completed.iter_rows(named=True):
        key = tuple(row[k] for k in KEY)
        if key not in adapted:
            continue
        ids, labels, probs = adapted[key]
        record: dict = dict(zip(KEY, key))
        for m in CI_METRICS:
            ci = bootstrap_ci(m, labels, probs, n_resamples=n_resamples)
            low, high = ci_columns(m)
            record[low], record[high] = ci.low, ci.high
        if key in zeroshot and zeroshot[key][0] == ids:
            record.update(_prefixed("vs_zeroshot", compare(
                labels, probs, zeroshot[key][2], n_resamples=n_resamples, verdict_metric=verdict_metric)))
        for prefix, found in baselines.items():
            other = found.get(key[:2])
            if other is None or other == key or other not in adapted:
                continue
            other_ids, _, other_probs = adapted[other]
            if other_ids == ids:
                record.update(_prefixed(prefix, compare(
                    labels, probs, other_probs, n_resamples=n_resamples, verdict_metric=verdict_metric)))
            elif notes is not None:
                notes.append(f"{key[0]}/{key[1]}: {key[2]} and {other[2]} were tested on different "
                             f"images; no paired comparison ({prefix})")
        records.append(record)
    if not records:
        return pl.DataFrame(schema={k: pl.String for k in KEY})
    return pl.DataFrame(records, infer_schema_length=None)


def verdict_text(verdict: str | None, p_value: float | None, discordant: int | None,
                 role: str) -> str:
    """`better (p=0.0005, 12 discordant)` for the primary row, `exploratory (p=0.03, 7 discordant)`
    for the others, "" without a comparison."""
    if verdict is None:
        return ""
    detail = f"p={p_value:.3g}" if p_value is not None else "no p"
    if discordant is not None:
        detail += f", {discordant} discordant"
    return f"{verdict} ({detail})" if role == PRIMARY else f"{EXPLORATORY} ({detail})"


def with_uncertainty(board: pl.DataFrame, uncertainty: pl.DataFrame, metric: str) -> pl.DataFrame:
    """A dataset leaderboard with its trials' interval and verdict columns (left join).

    `verdict_role` is `primary` on the first rank-1 row of each cohort and objective (the
    validation-selected trial), `exploratory` elsewhere; `vs_<against>` is the text shown."""
    if uncertainty.height == 0:
        return board
    joined = board.join(uncertainty, on=list(KEY), how="left")
    group = [c for c in ("cohort", "study_objective") if c in joined.columns]
    if "rank" in joined.columns:
        numbered = joined.with_columns(pl.int_range(pl.len()).alias("_row"))
        firsts = numbered.filter(pl.col("rank") == 1)
        if group:
            firsts = firsts.group_by(group, maintain_order=True).agg(pl.col("_row").first())
        primary_rows = firsts["_row"].head(firsts.height if group else 1).to_list()
        joined = numbered.with_columns(
            pl.when(pl.col("_row").is_in(primary_rows)).then(pl.lit(PRIMARY))
            .otherwise(pl.lit(EXPLORATORY)).alias("verdict_role")).drop("_row")
    else:  # a table of single trials (no ranking): each row is its own primary comparison
        joined = joined.with_columns(pl.lit(PRIMARY).alias("verdict_role"))
    for against in AGAINST:
        verdict, p, n = f"vs_{against}_verdict", f"vs_{against}_verdict_p", f"vs_{against}_discordant"
        if verdict not in joined.columns:
            continue
        joined = joined.with_columns(
            pl.struct(verdict, p, n, "verdict_role").map_elements(
                lambda s, v=verdict, q=p, d=n: verdict_text(s[v], s[q], s[d], s["verdict_role"]),
                return_dtype=pl.String,
            ).alias(f"vs_{against}")
        )
    return joined


def leaderboard_uncertainty_columns(board: pl.DataFrame, metric: str) -> Sequence[str]:
    """The interval and verdict columns shown in a Markdown leaderboard, where present."""
    wanted = [*ci_columns(metric), "verdict_role", "vs_zeroshot", "vs_zeroshot_mcnemar_p",
              "vs_paper_hparams", "vs_reference_variant"]
    return [c for c in wanted if c in board.columns]
