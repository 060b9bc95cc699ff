"""The results vocabulary: every name a trial writes and the study, its progress display and the
analysis read back, defined once.

Layout of a study's results: <storage>/<study>/study.json and, per dataset, <storage>/<study>/<dataset>/
holding Ray's experiment files, one `t<NNNN>_<trial id>/` folder per trial (params.json, result.json,
TensorBoard events, checkpoints, error.txt), `optuna.db` and, once every trial has finished, the
complete marker. A dataset's confirmation experiment sits beside it in <dataset>_confirm/, its
baseline arm (when asked for) in <dataset>_baseline/.

Result rows (result.json, one JSON object per line): one row per stage-2 epoch, then the trial's final
row (`status` = "completed"), which repeats the last epoch's columns and adds the selected epoch's
test metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from medguna.config import method_field_names

# ---- files ----
STUDY_FILE = "study.json"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
OPTUNA_FILE = "optuna.db"
COMPLETE_MARKER = "medguna_complete.json"  # a dataset's experiment: every trial finished

# Trial folders are named t<NNNN>_<tune trial id>, e.g. t0003_a1b2c3d4_00003: short (Ray's default
# embeds every parameter and breaks long paths) and ordered by the searcher's trial number.
TRIAL_DIR_PATTERN = re.compile(r"^t(?P<number>\d+)_(?P<trial_id>.+)$")


def trial_dirname(number: int, trial_id: str) -> str:
    return f"t{number:04d}_{trial_id}"


# A dataset's confirmation experiment: <study>/<dataset>_confirm/, its trials named
# confirm/t<NNNN>_<id> in the analysis tables (column `stage`); its baseline arm (the reference
# variant at the paper's point, medguna.study.baseline): <study>/<dataset>_baseline/.
CONFIRM_SUFFIX = "_confirm"
BASELINE_SUFFIX = "_baseline"
SEARCH_STAGE, CONFIRM_STAGE, BASELINE_STAGE = "search", "confirm", "baseline"


# ---- trial outcomes ----
class TrialOutcome(StrEnum):
    """How a trial ended, as the study's counts, Optuna's export, the progress display and the
    analysis tables all name it."""

    COMPLETED = "completed"  # every stage-2 epoch ran and the final row was written
    STOPPED_EARLY = "stopped_early"  # the scheduler (ASHA) stopped it after fewer epochs
    FAILED = "failed"  # it raised; its reason is in error.txt
    INCOMPLETE = "incomplete"  # neither: interrupted, or nothing reported


# The same as plain strings, for table cells (Polars) and JSON.
COMPLETED, STOPPED_EARLY, FAILED, INCOMPLETE = (o.value for o in TrialOutcome)
TRIAL_OUTCOMES = (COMPLETED, STOPPED_EARLY, FAILED, INCOMPLETE)
STATUS = "status"  # the column that marks a trial's final row
FINAL_STATUS = TrialOutcome.COMPLETED.value


OUTCOME_ATTR = "outcome"  # the Optuna user attribute that holds a trial's outcome


def optuna_outcome(user_attrs: Mapping[str, Any]) -> str | None:
    """A trial's outcome from its Optuna user attributes; exports before the name held it in
    `budget`, with "full" for completed."""
    if OUTCOME_ATTR in user_attrs:
        return user_attrs[OUTCOME_ATTR]
    budget = user_attrs.get("budget")
    return COMPLETED if budget == "full" else budget


def classify_outcome(*, failed: bool, final: bool, epochs_run: int | None, epochs: int | None) -> TrialOutcome:
    """The one rule: failed beats everything; a final row means completed; fewer epochs than the
    budget means stopped early; anything else (no epoch reported, no budget known) is incomplete."""
    if failed:
        return TrialOutcome.FAILED
    if final:
        return TrialOutcome.COMPLETED
    if epochs_run and epochs is not None and epochs_run < epochs:
        return TrialOutcome.STOPPED_EARLY
    return TrialOutcome.INCOMPLETE


def outcome_of(last_row: Mapping[str, Any] | None, *, failed: bool, epochs: int | None) -> TrialOutcome:
    """The outcome of a trial from its last reported row (Tune's last result)."""
    row = last_row or {}
    return classify_outcome(failed=failed, final=is_final_row(row), epochs_run=row.get(EPOCH), epochs=epochs)


def is_final_row(row: Mapping[str, Any]) -> bool:
    return row.get(STATUS) == FINAL_STATUS


# ---- result columns ----
EPOCH = "epoch"
OBJECTIVE = "objective"  # the final row: which metric selection maximised (runtime.objective)
# Every row: the best value of the objective so far (stage 1 alone included when it competes).
# Tune's metric: ASHA and Optuna judge a trial by the epoch selection would keep, not the last one.
OBJECTIVE_BEST_SO_FAR = "objective_best_so_far"
# The final row: the objective of the epoch selection kept (0: stage 1 alone). What trials are ranked by.
OBJECTIVE_SELECTED = "objective_selected"
SELECTED_EPOCH = "selected_epoch"
VARIANT = "variant"  # method.variant, in config, params, rows and TensorBoard alike
# Every row of a trial run at the paper's hyperparameters inside medguna's pipeline (the leaderboards'
# ★ "paper's hyperparameters"); not the reference implementation, which is variant "reference".
PAPER_POINT = "is_paper_point"

# The design dimensions: always part of a configuration, first in every table.
DESIGN_DIMENSIONS = ("adapter_width", "prompt_length", "entropy_weight", "description_source")
# Every method hyperparameter a study may sample (method.* in the config).
METHOD_PARAMS = tuple(method_field_names())
# params.json keys that identify a run rather than a configuration.
NOT_CONFIGURATION = ("dataset", "seed", PAPER_POINT)


def method_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The method hyperparameters among a trial's sampled config (dataset, seed... left out)."""
    return {k: v for k, v in config.items() if k in METHOD_PARAMS}


PROVENANCE = (
    "study",
    "dataset",
    "data_source",
    "synthetic_shift",
    "synthetic_seed",
    "control",
    "protocol",  # runtime.protocol: validation, or reference (test read every epoch)
    "encoder",
    "checkpoint",
    "checkpoint_sha256",
    VARIANT,
    "code_version",
    "descriptions_sha256",  # the sentences used: a description set's provenance has the same hash
)

# Metrics scored on the test split at the selected epoch, and their zero-shot counterparts.
HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "auroc")
DEFAULT_METRIC = "balanced_accuracy"
# Calibration of the same predictions (lower is better), per split, zero-shot included.
CALIBRATION_METRICS = ("ece", "brier")

FINAL_ROW_COLUMNS = (
    SELECTED_EPOCH,
    OBJECTIVE,
    OBJECTIVE_SELECTED,
    *(f"test_{m}" for m in HEADLINE_METRICS),
    *(f"zeroshot_test_{m}" for m in HEADLINE_METRICS),
    *(f"{kind}_{m}" for kind in ("test", "zeroshot_test") for m in CALIBRATION_METRICS),
)
EPOCH_COLUMNS = (
    EPOCH,
    OBJECTIVE_BEST_SO_FAR,
    "loss",
    "loss_ce",
    "loss_entropy",
    "lr",
    "images_per_second",
    "pseudo_label_accuracy",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_f1",
    "val_auroc",
    "val_information_maximization",
    "val_effective_classes",
    "val_max_class_share",
    "val_collapsed",
    "val_teacher_agreement",
    "zeroshot_val_accuracy",
    "zeroshot_val_balanced_accuracy",
    "zeroshot_val_macro_f1",
    "zeroshot_val_auroc",
    *(f"{kind}_{m}" for kind in ("val", "zeroshot_val") for m in CALIBRATION_METRICS),
    "peak_memory_mb",
)

# Rows written before these names were settled: `objective_value` meant the best-so-far value on
# epoch rows and the selected epoch's on the final row (equal there); `method_variant` was `variant`.
LEGACY_OBJECTIVE = "objective_value"
LEGACY_VARIANT = "method_variant"
LEGACY_PAPER_POINT = "is_reference_config"  # the paper's point, before it was named for what it is


def upgrade_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A result row in today's names (rows of earlier studies are read as they were meant)."""
    out = dict(row)
    if LEGACY_OBJECTIVE in out:
        value = out.pop(LEGACY_OBJECTIVE)
        out.setdefault(OBJECTIVE_BEST_SO_FAR, value)
        if is_final_row(out):
            out.setdefault(OBJECTIVE_SELECTED, value)
    if LEGACY_VARIANT in out:
        out.setdefault(VARIANT, out.pop(LEGACY_VARIANT))
    if LEGACY_PAPER_POINT in out:
        out.setdefault(PAPER_POINT, out.pop(LEGACY_PAPER_POINT))
    return out
