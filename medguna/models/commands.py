"""`medguna check-model`: load an encoder the way a trial would and say what was found."""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch

from medguna.config import TEST_SIZE_CHECKPOINT
from medguna.errors import CheckpointError, MedgunaError
from medguna.models.registry import build_encoder, list_encoders

# Vocabulary texts for the --test-size model (it has no real tokenizer).
_TEST_SIZE_TEXTS = [
    "a photo of a normal chest x_ray",
    "a photo of a pneumonia chest x_ray",
    "a photo of a tuberculosis chest x_ray",
    "a fundus photograph showing diabetic retinopathy",
    "a dermoscopy image of a melanoma",
]
_SMOKE_TEXT = "a chest x-ray with no abnormal findings"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register this area's subcommands on the medguna command line."""
    parser = subparsers.add_parser(
        "check-model",
        help="load an encoder checkpoint and tokenizer, report what was found, run a smoke forward",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="folder (or zip) of the MedCLIP-ViT release")
    source.add_argument(
        "--test-size", action="store_true", help="build the tiny test-size model in a temp folder"
    )
    parser.add_argument("--tokenizer", help="folder holding Bio_ClinicalBERT's vocab.txt")
    parser.add_argument("--encoder", default="medclip-vit", help=f"one of {list_encoders()}")
    parser.set_defaults(func=check_model)


def check_model(args: argparse.Namespace) -> int:
    """Print parameter counts, dims, the load report and a smoke forward; 0 on success, 1 on error."""
    try:
        if args.test_size:
            with tempfile.TemporaryDirectory(prefix="medguna-test-size-") as cache_dir:
                _report(
                    build_encoder(
                        args.encoder,
                        TEST_SIZE_CHECKPOINT,
                        args.tokenizer,
                        cache_dir=cache_dir,
                        vocab_texts=_TEST_SIZE_TEXTS,
                    )
                )
        else:
            _report(build_encoder(args.encoder, args.checkpoint, args.tokenizer))
    except MedgunaError as error:
        print(f"check-model failed: {error}", file=sys.stderr)
        return 1
    return 0


def _report(encoder) -> None:
    info = encoder.info
    print(f"encoder: {info['encoder']}  checkpoint: {info['checkpoint']}")
    print(f"weights: {info['checkpoint_path']}  sha256: {info['checkpoint_sha256']}")
    print(f"test-size: {info['is_test_size']}  tokenizer: {info['tokenizer']}")
    for tower, count in info["parameters"].items():
        print(f"parameters[{tower}]: {count:,}")
    print(
        f"embed_dim: {encoder.embed_dim}  prompt_dim: {encoder.prompt_dim}  "
        f"image_size: {encoder.image_size}"
    )
    report = info["load_report"]
    print("load report: " + ", ".join(f"{name} {count}" for name, count in report.items()))
    encoder.eval()
    with torch.no_grad():
        # A smooth radial pattern, not a blank image: with zero biases a constant input can map to
        # exactly zero, which would hide a broken tower.
        axis = torch.linspace(-1.0, 1.0, encoder.image_size)
        radius = (axis[None, :] ** 2 + axis[:, None] ** 2).sqrt()
        pattern = (0.5 + 0.5 * torch.cos(6.0 * radius)).reshape(1, 1, encoder.image_size, encoder.image_size)
        image = encoder.image_features(pattern)
        text = encoder.encode_texts([_SMOKE_TEXT])
    if not (torch.isfinite(image).all() and torch.isfinite(text).all()):
        raise CheckpointError("the smoke forward produced NaN or infinite features: the weights are damaged "
                              "or do not belong to this architecture")
    print(
        f"smoke image_features(radial pattern 1x1x{encoder.image_size}x{encoder.image_size}): "
        f"shape {tuple(image.shape)}, norm {image.norm().item():.4f}"
    )
    print(
        f"smoke encode_texts([{_SMOKE_TEXT!r}]): shape {tuple(text.shape)}, "
        f"norm {text.norm().item():.4f}"
    )
