"""MedUnA's method as plain PyTorch: stage 1, stage 2 losses and steps, metrics, selection.

No Ray, Hydra, accelerate, transformers or file access here: tensors and modules in, numbers out.
"""

from medguna.method.losses import (
    confident_marginal_entropy,
    confident_row_count,
    label_smoothing_cross_entropy,
    stage2_loss,
)
from medguna.method.metrics import classification_metrics, label_free_metrics
from medguna.method.selection import select_epoch
from medguna.method.stage1 import make_teacher, train_text_adapter
from medguna.method.stage2 import (
    Stage2Hyperparameters,
    check_finite,
    make_stage2_optimizer,
    stage2_step,
)
from medguna.method.teacher import student_logits, teacher_labels
from medguna.method.zeroshot import zero_shot_logits

__all__ = [
    "Stage2Hyperparameters",
    "check_finite",
    "classification_metrics",
    "confident_marginal_entropy",
    "confident_row_count",
    "label_free_metrics",
    "label_smoothing_cross_entropy",
    "make_stage2_optimizer",
    "make_teacher",
    "select_epoch",
    "stage2_loss",
    "stage2_step",
    "student_logits",
    "teacher_labels",
    "train_text_adapter",
    "zero_shot_logits",
]
