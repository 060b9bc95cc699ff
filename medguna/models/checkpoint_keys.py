"""The released MedCLIP-ViT key layout (transformers 4.2x) and its mapping onto today's modules.

Every released entry is classified as one of:
- used:        a parameter, renamed where transformers 5 moved it (Swin attention / MLP paths);
- recomputed:  a buffer today's model rebuilds from its config (Swin relative_position_index,
               BERT position_ids); the loader checks the released values equal the rebuilt ones;
- dropped:     a buffer that carries nothing the model needs (BERT token_type_ids, all zeros).
The Swin renames are transformers' own rules for old Swin checkpoints (conversion_mapping "swin"),
applied only under the vision prefix because the same substrings also occur in BERT keys.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from transformers.conversion_mapping import get_checkpoint_conversion_mapping

from medguna.models.medclip_config import MedClipConfig

VISION_PREFIX = "vision_model.model."
TEXT_PREFIX = "text_model.model."

Action = Literal["used", "recomputed", "dropped", "unknown"]


@dataclass(frozen=True)
class KeyMapping:
    """What happens to one checkpoint entry."""

    action: Action
    target: str | None  # key in today's state dict ("used") or buffer path ("recomputed")


def _released_swin_keys(config: MedClipConfig) -> list[str]:
    """SwinModel.state_dict() keys as transformers 4.2x saved them, by module registration order."""
    vision = config.vision
    keys = [
        "embeddings.patch_embeddings.projection.weight",
        "embeddings.patch_embeddings.projection.bias",
        "embeddings.norm.weight",
        "embeddings.norm.bias",
    ]
    stages = len(vision["depths"])
    for stage, depth in enumerate(vision["depths"]):
        for block in range(depth):
            prefix = f"encoder.layers.{stage}.blocks.{block}."
            keys += [
                prefix + "layernorm_before.weight",
                prefix + "layernorm_before.bias",
                prefix + "attention.self.relative_position_bias_table",
                prefix + "attention.self.relative_position_index",
            ]
            for name in ("query", "key", "value"):
                keys += [
                    prefix + f"attention.self.{name}.weight",
                    prefix + f"attention.self.{name}.bias",
                ]
            keys += [
                prefix + "attention.output.dense.weight",
                prefix + "attention.output.dense.bias",
                prefix + "layernorm_after.weight",
                prefix + "layernorm_after.bias",
                prefix + "intermediate.dense.weight",
                prefix + "intermediate.dense.bias",
                prefix + "output.dense.weight",
                prefix + "output.dense.bias",
            ]
        if stage < stages - 1:
            keys += [
                f"encoder.layers.{stage}.downsample.reduction.weight",
                f"encoder.layers.{stage}.downsample.norm.weight",
                f"encoder.layers.{stage}.downsample.norm.bias",
            ]
    keys += ["layernorm.weight", "layernorm.bias"]  # the average pooler has no weights
    return keys


def _released_bert_keys(config: MedClipConfig) -> list[str]:
    """BertModel.state_dict() keys under transformers 4.2x (position_ids was still persistent)."""
    keys = [
        "embeddings.position_ids",
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    for layer in range(config.text["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}."
        for name in ("query", "key", "value"):
            keys += [
                prefix + f"attention.self.{name}.weight",
                prefix + f"attention.self.{name}.bias",
            ]
        for name in (
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ):
            keys += [prefix + f"{name}.weight", prefix + f"{name}.bias"]
    keys += ["pooler.dense.weight", "pooler.dense.bias"]
    return keys


def released_state_dict_keys(config: MedClipConfig) -> list[str]:
    """The flat key list MedCLIP's code saved (434 entries at full size)."""
    return (
        ["logit_scale"]
        + [VISION_PREFIX + key for key in _released_swin_keys(config)]
        + ["vision_model.projection_head.weight"]
        + [TEXT_PREFIX + key for key in _released_bert_keys(config)]
        + ["text_model.projection_head.weight"]
    )


@functools.cache
def _swin_renaming_rules() -> tuple:
    return tuple(get_checkpoint_conversion_mapping("swin") or ())


def _rename_swin_key(inner_key: str) -> str:
    """Apply transformers' old-Swin renaming rules to a key inside SwinModel."""
    for rule in _swin_renaming_rules():
        inner_key, _ = rule.rename_source_key(inner_key)
    return inner_key


def map_checkpoint_key(key: str, current_keys: set[str]) -> KeyMapping:
    """Classify one checkpoint key against today's state-dict keys.

    Keys already in today's layout (e.g. a model.safetensors written by current code) map to
    themselves, so both layouts load through the same path.
    """
    if key in current_keys:
        return KeyMapping("used", key)
    if key.startswith(VISION_PREFIX):
        inner = key[len(VISION_PREFIX) :]
        if inner.endswith("attention.self.relative_position_index"):
            block = inner[: -len("self.relative_position_index")]
            return KeyMapping(
                "recomputed",
                VISION_PREFIX + block + "relative_position_bias.relative_position_index",
            )
        renamed = VISION_PREFIX + _rename_swin_key(inner)
        if renamed in current_keys:
            return KeyMapping("used", renamed)
    if key == TEXT_PREFIX + "embeddings.position_ids":
        return KeyMapping("recomputed", key)
    if key == TEXT_PREFIX + "embeddings.token_type_ids":
        return KeyMapping("dropped", None)
    return KeyMapping("unknown", None)


def released_buffer_value(buffer_key: str, current: torch.Tensor) -> torch.Tensor:
    """The value transformers 4.2x stored for a buffer today's model recomputes.

    Swin kept relative_position_index as (W*W, W*W) (today it is flat); BERT kept position_ids
    as (1, max_positions).
    """
    if buffer_key.endswith("relative_position_index"):
        side = math.isqrt(current.numel())
        return current.reshape(side, side).clone()
    return current.reshape(1, -1).clone()


def current_to_released(config: MedClipConfig, current_keys: set[str]) -> dict[str, str]:
    """Inverse map for saving: today's key -> released key, for every used released entry."""
    inverse: dict[str, str] = {}
    for released in released_state_dict_keys(config):
        mapping = map_checkpoint_key(released, current_keys)
        if mapping.action == "used":
            assert mapping.target is not None
            inverse[mapping.target] = released
    return inverse
