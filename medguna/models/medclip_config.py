"""MedCLIP-ViT architecture settings: the released full size and a tiny test size."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import BertConfig, SwinConfig

from medguna.atomic import write_text_atomic
from medguna.errors import CheckpointError

# File name medguna writes next to a checkpoint it saved; the official release has none,
# so a directory without it is read as the full-size release.
CONFIG_FILE_NAME = "medguna_medclip_config.json"


@dataclass(frozen=True)
class MedClipConfig:
    """Everything that fixes the shapes of a MedCLIP-ViT model."""

    name: str
    vision: dict[str, Any] = field(default_factory=dict)  # SwinConfig keyword arguments
    text: dict[str, Any] = field(default_factory=dict)  # BertConfig keyword arguments
    projection_dim: int = 512
    logit_scale_init: float = math.log(1 / 0.07)

    def swin_config(self) -> SwinConfig:
        return SwinConfig(**self.vision)

    def bert_config(self) -> BertConfig:
        return BertConfig(**self.text)

    @property
    def prompt_dim(self) -> int:
        """Width of the tokens entering the first Swin stage (= Swin embed_dim)."""
        return int(self.vision["embed_dim"])

    @property
    def vision_width(self) -> int:
        """Width of the pooled Swin output (embed_dim doubled at each of the 3 merges)."""
        return int(self.vision["embed_dim"]) * 2 ** (len(self.vision["depths"]) - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MedClipConfig:
        return cls(**values)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CONFIG_FILE_NAME
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: Path) -> MedClipConfig:
        fix = ("Delete the file to read the directory as the official full-size release, or re-create "
               "it with save_released_format.")
        try:
            config = cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise CheckpointError(f"cannot read the MedCLIP config {path}: {error}. {fix}") from error
        problem = size_problem(config)
        if problem:
            raise CheckpointError(f"the MedCLIP config {path} is invalid: {problem}. {fix}")
        return config


MAX_PARAMETERS = 2_000_000_000  # ten times the released MedCLIP-ViT (~0.2 billion)
_VISION_SIZES = ("embed_dim", "image_size", "patch_size", "window_size")
_TEXT_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "max_position_embeddings")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def size_problem(config: MedClipConfig) -> str:
    """What makes the config unbuildable (a size that is not a positive integer, or a model too
    large to be MedCLIP, which would try to allocate it), or "" if nothing does."""
    for section, keys in (("vision", _VISION_SIZES), ("text", _TEXT_SIZES)):
        values = getattr(config, section)
        for key in keys:
            if not _positive_int(values.get(key)):
                return f"{section}.{key}={values.get(key)!r} must be a positive integer"
    for key in ("depths", "num_heads"):
        value = config.vision.get(key)
        if not isinstance(value, list) or not value or not all(_positive_int(v) for v in value):
            return f"vision.{key}={value!r} must be a non-empty list of positive integers"
    if not _positive_int(config.projection_dim):
        return f"projection_dim={config.projection_dim!r} must be a positive integer"
    t, v = config.text, config.vision
    hidden = t["hidden_size"]
    text = ((t["vocab_size"] + t["max_position_embeddings"]) * hidden
            + t["num_hidden_layers"] * (4 * hidden * hidden + 2 * hidden * t["intermediate_size"]))
    vision = sum(depth * 12 * (v["embed_dim"] * 2**stage) ** 2 for stage, depth in enumerate(v["depths"]))
    if text + vision > MAX_PARAMETERS:
        return (f"it describes a model of about {(text + vision) / 1e9:.0f} billion parameters "
                f"(text.vocab_size={t['vocab_size']}, text.hidden_size={hidden}, vision.embed_dim="
                f"{v['embed_dim']}); MedCLIP-ViT has about 0.2 billion")
    return ""


def _swin_settings(embed_dim: int, depths: list[int], num_heads: list[int]) -> dict[str, Any]:
    # Image 224 / patch 4 / window 7 at every size so the 56x56 patch grid (and the reference's
    # 57x57 reinterpretation) is the same in tests as in the real model.
    return {
        "image_size": 224,
        "patch_size": 4,
        "num_channels": 3,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": 7,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "drop_path_rate": 0.1,
        "hidden_act": "gelu",
        "use_absolute_embeddings": False,
        "layer_norm_eps": 1e-5,
    }


def full_size_config() -> MedClipConfig:
    """The released MedCLIP-ViT: swin-tiny-patch4-window7-224 + Bio_ClinicalBERT."""
    text = {
        "vocab_size": 28996,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    return MedClipConfig(
        name="medclip-vit",
        vision=_swin_settings(96, [2, 2, 6, 2], [3, 6, 12, 24]),
        text=text,
    )


def test_size_config() -> MedClipConfig:
    """A tiny MedCLIP-ViT with the same grid geometry, for tests that must run in seconds."""
    text = {
        "vocab_size": 1024,
        "hidden_size": 64,
        # 3 layers so hidden_states[2] and hidden_states[-1] are different layers, as at full size.
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    return MedClipConfig(
        name="medclip-vit-test-size",
        vision=_swin_settings(24, [2, 2, 2, 2], [1, 2, 4, 8]),
        text=text,
    )


def demo_config() -> MedClipConfig:
    """The demonstration encoder (medguna pretrain-demo): the test-size architecture under its own
    name, since its weights are trained, not random."""
    test = test_size_config()
    return MedClipConfig(name=DEMO_NAME, vision=test.vision, text=test.text)


DEMO_NAME = "medclip-vit-demo"

# The name starts with "test_"; keep pytest from collecting it when a test module imports it.
test_size_config.__test__ = False  # type: ignore[attr-defined]
