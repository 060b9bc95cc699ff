"""Zero-shot baseline (docs/method.md §2): cosine similarity between images and class prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medguna.errors import ConfigError


def zero_shot_logits(
    image_features: torch.Tensor, class_prototypes: torch.Tensor
) -> torch.Tensor:
    """normalise(f) @ normalise(t).T: (B, D) x (K, D) -> (B, K) cosine similarities.

    Both sides are normalised here, so raw encoder features and already-unit text embeddings give
    the same result; no logit scale is applied (argmax and ranking-based metrics ignore it).
    """
    if image_features.dim() != 2 or class_prototypes.dim() != 2:
        raise ConfigError(
            "zero-shot needs image_features (B, D) and class_prototypes (K, D), got "
            f"{tuple(image_features.shape)} and {tuple(class_prototypes.shape)}"
        )
    if image_features.shape[1] != class_prototypes.shape[1]:
        raise ConfigError(
            f"image features are {image_features.shape[1]}-d but class prototypes are "
            f"{class_prototypes.shape[1]}-d: both must come from the same encoder"
        )
    prototypes = class_prototypes.to(image_features.device, image_features.dtype)
    return F.normalize(image_features, dim=-1) @ F.normalize(prototypes, dim=-1).T
