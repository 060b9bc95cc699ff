"""Teacher pseudo-labels and student logits (docs/method.md §4, §5 item 3).

The reference L2-normalises the clean-view features it gives the frozen teacher, but feeds the
student adapter the raw (unnormalised) prompted features, so the student's logit scale, and with it
the effective temperature of both loss terms, depends on the image feature norm. medguna's default
variant normalises both, so teacher and student see features on the same unit sphere as the
stage-1 text embeddings the adapter was trained on. ``normalize`` selects the variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medguna.errors import ConfigError


def _check_features(features: torch.Tensor, name: str) -> None:
    if features.dim() != 2:
        raise ConfigError(
            f"{name} must have shape (batch, embed_dim), got {tuple(features.shape)}"
        )


def teacher_logits(
    teacher: nn.Module, clean_features: torch.Tensor, *, normalize: bool
) -> torch.Tensor:
    """teacher(f) without autograd, f L2-normalised if ``normalize`` (the reference does)."""
    _check_features(clean_features, "clean_features")
    with torch.no_grad():
        return teacher(F.normalize(clean_features, dim=-1) if normalize else clean_features)


def teacher_labels(
    teacher: nn.Module, clean_features: torch.Tensor, *, normalize: bool
) -> torch.Tensor:
    """Hard pseudo-labels argmax(teacher(f)): a plain LongTensor usable as cross-entropy targets."""
    return teacher_logits(teacher, clean_features, normalize=normalize).argmax(dim=-1)


def student_logits(
    adapter: nn.Module, features: torch.Tensor, *, normalize: bool
) -> torch.Tensor:
    """adapter(f), with gradients; the reference passes raw f (normalize=False), medguna unit f."""
    _check_features(features, "student features")
    return adapter(F.normalize(features, dim=-1) if normalize else features)
