"""Stage 2 (docs/method.md §4): one loss computation of the unsupervised adaptation, and its optimiser.

The trial owns the loop (views, encoder, accelerate); this module owns the arithmetic. The step
returns the loss instead of calling backward, so the caller can use ``accelerator.backward`` and
gradient accumulation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from medguna.errors import ConfigError, TrialError
from medguna.method.losses import stage2_loss
from medguna.method.teacher import student_logits


@dataclass(frozen=True)
class Stage2Hyperparameters:
    """Loss settings of stage 2; defaults are the reference numbers with medguna's two fixes on.

    entropy_weight > 0 (the reference's +1.5) rewards confident rows agreeing on one class, which
    works against class balance; < 0 turns the term into a diversity term (see losses.py).
    safe_entropy: keep at least one confident row (the reference gets NaN for batches under 10).
    normalize_student: L2-normalise student features like the teacher's (the reference does not).
    """

    ce_weight: float = 0.7
    entropy_weight: float = 1.5
    confident_ratio: float = 0.1
    label_smoothing: float = 0.1
    safe_entropy: bool = True
    normalize_student: bool = True

    def __post_init__(self) -> None:
        for name in ("ce_weight", "entropy_weight", "confident_ratio", "label_smoothing"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"stage 2 {name} must be a finite number, got {value}")
        if self.ce_weight < 0:
            raise ConfigError(f"stage 2 ce_weight must be >= 0, got {self.ce_weight}")
        if not 0.0 < self.confident_ratio <= 1.0:
            raise ConfigError(
                f"stage 2 confident_ratio must be in (0, 1], got {self.confident_ratio}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                f"stage 2 label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )

    @classmethod
    def reference(cls) -> Stage2Hyperparameters:
        """The reference implementation's settings, NaN-prone entropy and raw student features."""
        return cls(safe_entropy=False, normalize_student=False)


def stage2_step(
    student_features: torch.Tensor,
    adapter: nn.Module,
    teacher_labels: torch.Tensor,
    hp: Stage2Hyperparameters,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch: student features (B, D, with grad) -> adapter logits -> stage2_loss.

    Returns (loss with grad, unweighted detached terms ``loss_ce`` and ``loss_entropy``).
    """
    logits = student_logits(adapter, student_features, normalize=hp.normalize_student)
    return stage2_loss(
        logits,
        teacher_labels.to(logits.device),
        ce_weight=hp.ce_weight,
        entropy_weight=hp.entropy_weight,
        confident_ratio=hp.confident_ratio,
        label_smoothing=hp.label_smoothing,
        safe_entropy=hp.safe_entropy,
    )


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Raise TrialError naming ``where`` when the loss is NaN or infinite (a GPU sync)."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrialError(
            f"loss became {value} at {where}: the run diverged or a batch was too small for the "
            "confident-entropy term (use safe_entropy, a batch of >= 1/confident_ratio images, "
            "or a lower learning rate)"
        )


def make_stage2_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "sgd",
    lr: float = 5e-4,
    weight_decay: float = 0.01,
) -> torch.optim.Optimizer:
    """SGD without momentum (the reference) or AdamW, at a constant lr."""
    trainable = [param for param in params if param.requires_grad]
    if not trainable:
        raise ConfigError(
            "stage 2 has no trainable parameters: pass the prompts and the student adapter"
        )
    if not lr > 0:
        raise ConfigError(f"stage 2 lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"stage 2 weight_decay must be >= 0, got {weight_decay}")
    if name == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=0.0, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"stage 2 optimizer must be 'sgd' or 'adamw', got {name!r}")
