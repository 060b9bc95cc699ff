"""MedUnA's losses: label-smoothed cross-entropy and the confident-rows marginal entropy.

Stage 2 (docs/method.md §4) minimises

    loss = ce_weight * LSCE(z, y_teacher) + entropy_weight * H(mean softmax of confident rows of z)

with ce_weight 0.7 and entropy_weight 1.5 in the reference. Note the sign: H of the *averaged*
distribution is ADDED, so minimising the loss drives the most confident rows towards agreeing on
one class. That is the opposite of SHOT's diversity term (which maximises H(mean p) to keep
classes balanced): with a positive entropy_weight this term pushes towards class imbalance and, left
alone, towards the single-class collapse seen in the reference's logs (docs/method.md §5 item 7). A
negative entropy_weight turns it into a diversity (balancing) term; a study can search both signs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medguna.errors import ConfigError


def _check_logits(logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ConfigError(
            f"logits must have shape (batch, num_classes), got {tuple(logits.shape)}"
        )


def _entropy_of_distribution(probs: torch.Tensor) -> torch.Tensor:
    """-sum p log p over the last dim; a clamped log keeps value and gradient finite at p = 0."""
    tiny = torch.finfo(probs.dtype).tiny
    return -(probs * torch.log(probs.clamp_min(tiny))).sum(dim=-1)


def label_smoothing_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Mean cross-entropy against (1 - s) * one_hot + s / K (PyTorch's convention, and timm's).

    The smoothing mass s is spread over all K classes, the target included, so the target gets
    1 - s + s / K.
    """
    _check_logits(logits)
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {smoothing}")
    if targets.shape != logits.shape[:1]:
        raise ConfigError(
            f"targets must have shape ({logits.shape[0]},) to match the logits, "
            f"got {tuple(targets.shape)}"
        )
    return F.cross_entropy(logits, targets, label_smoothing=smoothing)


def confident_row_count(batch_size: int, confident_ratio: float, *, safe: bool) -> int:
    """floor(ratio * B) rows; the reference can get 0 (B < 10 at ratio 0.1), the safe variant >= 1.

    The reference floors the float product as is, so 0.7 * 90 = 62.99999999999999 gives 62; the
    safe variant adds a tiny epsilon first so it gives the intended 63.
    """
    if not safe:
        return math.floor(confident_ratio * batch_size)
    return max(1, math.floor(confident_ratio * batch_size + 1e-9))


def confident_marginal_entropy(
    logits: torch.Tensor, confident_ratio: float, *, safe: bool
) -> torch.Tensor:
    """Entropy of the mean softmax over the floor(ratio * B) rows with the lowest entropy.

    safe=False reproduces the reference: with floor(ratio * B) = 0 the mean runs over an empty set
    and the result is NaN (docs/method.md §5 item 6). safe=True always keeps at least one row.
    """
    _check_logits(logits)
    if not 0.0 < confident_ratio <= 1.0:
        raise ConfigError(f"confident_ratio must be in (0, 1], got {confident_ratio}")
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    row_entropy = -(probs * log_probs).sum(dim=1)
    count = confident_row_count(logits.shape[0], confident_ratio, safe=safe)
    # Ties in entropy go to the earlier row (stable sort), so the choice is deterministic.
    confident_rows = torch.argsort(row_entropy.detach(), stable=True)[:count]
    mean_probs = probs[confident_rows].mean(dim=0)  # empty selection -> NaN, as in the reference
    return _entropy_of_distribution(mean_probs)


def stage2_loss(
    student_logits: torch.Tensor,
    teacher_labels: torch.Tensor,
    *,
    ce_weight: float,
    entropy_weight: float,
    confident_ratio: float,
    label_smoothing: float,
    safe_entropy: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ce_weight * LSCE + entropy_weight * confident marginal entropy (see the module docstring).

    Returns the loss (with grad) and the unweighted terms, detached, as 0-d tensors: converting
    them to floats is left to the caller so a GPU step does not synchronise just for logging.
    """
    loss_ce = label_smoothing_cross_entropy(student_logits, teacher_labels, label_smoothing)
    loss_entropy = confident_marginal_entropy(
        student_logits, confident_ratio, safe=safe_entropy
    )
    loss = ce_weight * loss_ce + entropy_weight * loss_entropy
    return loss, {"loss_ce": loss_ce.detach(), "loss_entropy": loss_entropy.detach()}
