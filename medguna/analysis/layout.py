"""Names fixed by the study results layout (the contract with the study runner).

Everything the analysis reads from disk is named here once, so a change of the layout is a change
of this file only.
"""

from __future__ import annotations

import re

# The checkpoint names result rows record for medguna's own stand-in models (defined with the
# model settings that accept them).
from medguna.config import DEMO_CHECKPOINT, PAPER_POINT, TEST_SIZE_CHECKPOINT  # noqa: F401

STUDY_FILE = "study.json"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
OPTUNA_FILE = "optuna.db"

# Trial folders are named t<NNNN>_<tune trial id>, e.g. t0003_a1b2c3d4_00003.
TRIAL_DIR_PATTERN = re.compile(r"^t(?P<number>\d+)_(?P<trial_id>.+)$")

# A dataset's confirmation experiment (medguna.study.confirm) sits beside its search experiment:
# <study>/<dataset>_confirm/, its trials named confirm/t<NNNN>_<id> in the tables (column stage).
CONFIRM_SUFFIX = "_confirm"
BASELINE_SUFFIX = "_baseline"  # medguna.study.baseline: the reference variant at the paper's point
SEARCH_STAGE, CONFIRM_STAGE, BASELINE_STAGE = "search", "confirm", "baseline"
BASELINE_LABEL = "reference variant at the paper's point (baseline arm, not ranked)"

# Trial states as the contract defines them (see results_layout in the project notes).
COMPLETED = "completed"
STOPPED_EARLY = "stopped_early"
FAILED = "failed"
INCOMPLETE = "incomplete"
TRIAL_STATES = (COMPLETED, STOPPED_EARLY, FAILED, INCOMPLETE)

# The four design-named hyperparameters: always part of a configuration, first in every table.
DESIGN_PARAMS = ("adapter_width", "prompt_length", "entropy_weight", "description_source")
# Other method hyperparameters a study may search (part of the configuration when they vary).
OTHER_PARAMS = (
    "ce_weight",
    "confident_ratio",
    "label_smoothing",
    "stage1_steps",
    "stage1_noise_std",
    "stage2_lr",
    "stage2_optimizer",
    "stage2_epochs",
    "strong_view_augmentation",
    "batch_size",
    "method_variant",
    "preprocessing",
    "text_wrapper",
)
# Results written before PAPER_POINT had its name called it is_reference_config: renamed on load.
LEGACY_PARAM_NAMES = {"is_reference_config": PAPER_POINT}
PAPER_POINT_LABEL = "★ paper's hyperparameters"
# params.json keys that identify a run rather than a configuration.
NOT_CONFIGURATION = ("dataset", "seed", PAPER_POINT, *LEGACY_PARAM_NAMES)

PROVENANCE = (
    "study",
    "dataset",
    "data_source",
    "synthetic_shift",
    "synthetic_seed",
    "control",
    "protocol",
    "encoder",
    "checkpoint",
    "checkpoint_sha256",
    "method_variant",
    "code_version",
    "descriptions_sha256",  # the sentences used: a description set's provenance has the same hash
)

# Metrics scored on the test split at the selected epoch, and their zero-shot counterparts.
HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "auroc")
DEFAULT_METRIC = "balanced_accuracy"
# Calibration of the same predictions (lower is better), per split, zero-shot included.
CALIBRATION_METRICS = ("ece", "brier")

FINAL_ROW_COLUMNS = (
    "selected_epoch",
    "objective",
    "objective_value",
    *(f"test_{m}" for m in HEADLINE_METRICS),
    *(f"zeroshot_test_{m}" for m in HEADLINE_METRICS),
    *(f"{kind}_{m}" for kind in ("test", "zeroshot_test") for m in CALIBRATION_METRICS),
)
EPOCH_COLUMNS = (
    "epoch",
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
OBJECTIVES = ("val_balanced_accuracy", "val_information_maximization")
