"""Per trial: a bootstrap interval of its test metrics and paired verdicts against zero-shot and
against the paper's configuration (the ★ reference trial of the same study and dataset), all on
the trial's own per-image test predictions (medguna.analysis.paired holds the statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from medguna.analysis.paired import DEFAULT_RESAMPLES, PAIRED_METRICS, bootstrap_ci, compare
from medguna.results import COMPLETED

KEY = ("study", "dataset", "trial")
CI_METRICS = PAIRED_METRICS  # metrics with a vectorised bootstrap


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
    """One row per completed trial with test predictions: `test_<m>_ci_low/high` for each
    bootstrapped metric, `vs_zeroshot_*` and `vs_reference_*` (McNemar counts and p, paired
    differences with interval and p, verdict)."""
    adapted = predictions_on_test(predictions, "adapted")
    zeroshot = predictions_on_test(predictions, "zeroshot")
    completed = trials.filter(pl.col("trial_status") == COMPLETED)
    references = {
        (r["study"], r["dataset"]): (r["study"], r["dataset"], r["trial"])
        for r in completed.filter(pl.col("is_reference_config")).iter_rows(named=True)
    }
    verdict_metric = metric if metric in ("balanced_accuracy", "auroc") else "balanced_accuracy"
    records = []
    for row in completed.iter_rows(named=True):
        key = tuple(row[k] for k in KEY)
        if key not in adapted:
            continue
        ids, labels, probs = adapted[key]
        record: dict = dict(zip(KEY, key))
        for m in CI_METRICS:
            ci = bootstrap_ci(m, labels, probs, n_resamples=n_resamples)
            record[f"test_{m}_ci_low"], record[f"test_{m}_ci_high"] = ci.low, ci.high
        if key in zeroshot and zeroshot[key][0] == ids:
            record.update(_prefixed("vs_zeroshot", compare(
                labels, probs, zeroshot[key][2], n_resamples=n_resamples, verdict_metric=verdict_metric)))
        reference = references.get(key[:2])
        if reference is not None and reference != key and reference in adapted:
            ref_ids, _, ref_probs = adapted[reference]
            if ref_ids == ids:
                record.update(_prefixed("vs_reference", compare(
                    labels, probs, ref_probs, n_resamples=n_resamples, verdict_metric=verdict_metric)))
            elif notes is not None:
                notes.append(f"{key[0]}/{key[1]}: {key[2]} and the reference trial {reference[2]} "
                             "were tested on different images; no paired comparison")
        records.append(record)
    if not records:
        return pl.DataFrame(schema={k: pl.String for k in KEY})
    return pl.DataFrame(records, infer_schema_length=None)


def verdict_text(verdict: str | None, p_value: float | None) -> str:
    """`better (p=0.003)`, `not distinguishable (p=0.41)`, or "" without a comparison."""
    if verdict is None:
        return ""
    return f"{verdict} (p={p_value:.2g})" if p_value is not None else verdict


def with_uncertainty(board: pl.DataFrame, uncertainty: pl.DataFrame, metric: str) -> pl.DataFrame:
    """A dataset leaderboard with its trials' interval and verdict columns (left join)."""
    if uncertainty.height == 0:
        return board
    joined = board.join(uncertainty, on=list(KEY), how="left")
    verdict_metric = metric if metric in ("balanced_accuracy", "auroc") else "balanced_accuracy"
    for against in ("zeroshot", "reference"):
        verdict, p = f"vs_{against}_verdict", f"vs_{against}_{verdict_metric}_p"
        if verdict not in joined.columns:
            continue
        joined = joined.with_columns(
            pl.struct(verdict, p).map_elements(
                lambda s, v=verdict, q=p: verdict_text(s[v], s[q]), return_dtype=pl.String
            ).alias(f"vs_{against}")
        )
    return joined


def leaderboard_uncertainty_columns(board: pl.DataFrame, metric: str) -> Sequence[str]:
    """The interval and verdict columns shown in a Markdown leaderboard, where present."""
    wanted = [f"test_{metric}_ci_low", f"test_{metric}_ci_high", "vs_zeroshot",
              "vs_zeroshot_mcnemar_p", "vs_reference"]
    return [c for c in wanted if c in board.columns]
