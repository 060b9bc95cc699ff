"""The classification adapter MedUnA trains on text (stage 1) and then on images (stage 2).

width 0 is the reference adapter: one bias-free ``Linear(embed_dim, num_classes)`` (docs/method.md §3).
width > 0 is a bottleneck ``embed_dim -> width -> num_classes`` (docs/method.md §7):

    Linear(embed_dim, width, bias=False) -> LayerNorm(width) -> GELU -> Linear(width, K, bias=False)

Why this shape:
- LayerNorm on the hidden layer makes the logit scale independent of the input norm. Stage 1 sees
  unit-norm text embeddings, while the reference student (docs/method.md §5 item 3) feeds raw image
  features whose norm is far from 1; without a norm the bottleneck's non-linearity would sit in a
  different regime in the two stages.
- GELU is smooth, so the entropy term of stage 2 gets useful gradients from every hidden unit
  (ReLU units that die on the shifted image distribution never recover with plain SGD).
- The output layer has no bias, as in the reference: stage 1 trains on description counts that
  differ per class, and a bias would learn those text frequencies as image class priors.
"""

from __future__ import annotations

import torch
from torch import nn

from medguna.config import MAX_ADAPTER_WIDTH
from medguna.errors import ConfigError


def _check_positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


class Adapter(nn.Module):
    """Maps (B, embed_dim) features to (B, num_classes) logits; width 0 = the reference linear."""

    def __init__(self, embed_dim: int, num_classes: int, width: int = 0) -> None:
        super().__init__()
        self.embed_dim = _check_positive_int("embed_dim", embed_dim, 1)
        self.num_classes = _check_positive_int("num_classes", num_classes, 2)
        if isinstance(width, bool) or not isinstance(width, int):
            raise ConfigError(
                f"adapter_width must be an integer (0 = linear adapter), got {width!r}"
            )
        if width < 0:
            raise ConfigError(
                f"adapter_width must be 0 (the reference linear adapter) or a positive hidden "
                f"width, got {width}"
            )
        if width > MAX_ADAPTER_WIDTH:
            raise ConfigError(
                f"adapter_width={width} is larger than {MAX_ADAPTER_WIDTH}: a bottleneck of a "
                f"{embed_dim}-d embedding should be narrower; use 0 for the linear adapter or a "
                f"width such as 64-1024"
            )
        self.width = width
        if width == 0:
            self.layers = nn.Sequential(nn.Linear(embed_dim, num_classes, bias=False))
        else:
            self.layers = nn.Sequential(
                nn.Linear(embed_dim, width, bias=False),
                nn.LayerNorm(width),
                nn.GELU(),
                nn.Linear(width, num_classes, bias=False),
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., embed_dim) features -> (..., num_classes) logits."""
        return self.layers(features)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, width={self.width}"
