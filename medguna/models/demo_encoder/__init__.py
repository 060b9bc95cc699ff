"""Where the shipped demonstration encoder lives (weights built by `medguna pretrain-demo`)."""

from __future__ import annotations

from pathlib import Path

from medguna.config import DEMO_CHECKPOINT, TEST_SIZE_CHECKPOINT
from medguna.errors import CheckpointError

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def demo_checkpoint_dir() -> Path:
    """The folder of the demonstration encoder shipped in the package, checked for completeness."""
    needed = ("model.safetensors", "vocab.txt", "medguna_medclip_config.json")
    missing = [name for name in needed if not (SHIPPED_DIR / name).is_file()]
    if missing:
        raise CheckpointError(
            f"the demonstration encoder in {SHIPPED_DIR} lacks {', '.join(missing)} (a copy of the "
            "repository without its package data?): rebuild it with `medguna pretrain-demo --out DIR` "
            "(about 30 minutes on 2 cores) and pass model.checkpoint=DIR, or pass "
            "model.checkpoint=<folder of the MedCLIP-ViT release>"
        )
    return SHIPPED_DIR


def encoder_description(model) -> str:
    """What a banner says about a ModelConfig's encoder: a stand-in never reads as MedCLIP."""
    if model.builtin == DEMO_CHECKPOINT:
        return ("DEMONSTRATION encoder (test-size MedCLIP-ViT pretrained on synthetic drawings, "
                "shipped with medguna; not MedCLIP)")
    if model.builtin == TEST_SIZE_CHECKPOINT:
        return "test-size MedCLIP-ViT with random weights (built offline; learns nothing)"
    return f"checkpoint {model.checkpoint}"
