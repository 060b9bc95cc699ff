"""Encoders: MedCLIP-ViT from config, checkpoint loading, test-size model, prompted vision path."""

from medguna.models.checkpoint import LoadReport, load_medclip_checkpoint, save_released_format
from medguna.models.encoder import Encoder
from medguna.models.medclip import MedClipModel, build_medclip
from medguna.models.medclip_config import MedClipConfig, full_size_config, test_size_config
from medguna.models.registry import build_encoder, list_encoders, register_encoder
from medguna.models.test_size import ensure_test_size_checkpoint
from medguna.models.tokenizer import build_wordpiece_vocab, load_tokenizer

__all__ = [
    "Encoder",
    "LoadReport",
    "MedClipConfig",
    "MedClipModel",
    "build_encoder",
    "build_medclip",
    "build_wordpiece_vocab",
    "ensure_test_size_checkpoint",
    "full_size_config",
    "list_encoders",
    "load_medclip_checkpoint",
    "load_tokenizer",
    "register_encoder",
    "save_released_format",
    "test_size_config",
]
