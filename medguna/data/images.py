"""Decode images and turn them into fixed-size square uint8 arrays (docs/method.md §1 and §4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medguna.errors import ConfigError, DataError

PREPROCESSINGS = ("medclip", "clip")

# MedCLIP's own single-channel statistics (docs/method.md §1).
MEDCLIP_MEAN = 0.5862785803043838
MEDCLIP_STD = 0.27950088968644304
# CLIP's RGB statistics, used by the reference for both views (docs/method.md §4).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Modes that hold more than 8 bits per sample; Pillow's convert("L") clips these instead of scaling.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# How such images become 8 bits: "rescale" by their bit depth (right), or "clip" every value above
# 255, which is what the reference's PIL convert("RGB") does to Montgomery's 12-bit PNGs
# (docs/method.md §5.9). "clip" exists only to reproduce that flaw; no variant uses it by default.
HIGH_BIT_DEPTHS = ("rescale", "clip")


def check_preprocessing(preprocessing: str) -> str:
    """Return `preprocessing` if it is known, else raise ConfigError listing the choices."""
    if preprocessing not in PREPROCESSINGS:
        raise ConfigError(
            f"unknown preprocessing {preprocessing!r}; choose one of {', '.join(PREPROCESSINGS)}"
        )
    return preprocessing


def channels_of(preprocessing: str) -> int:
    """Channels a preprocessing produces: medclip is grayscale (1), clip is RGB (3)."""
    return 1 if check_preprocessing(preprocessing) == "medclip" else 3


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    """Scale a 12/16-bit (or float) single-channel image to 8 bits by its effective bit depth.

    Medical PNGs store 12-bit data in 16-bit containers (Montgomery: values up to 4095), so dividing
    by 65535 would leave them nearly black and clipping at 255 would leave them white. The effective
    depth is the bit length of the brightest sample (at least 8), so a 12-bit image maps 4095 -> 255.
    """
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        values = np.clip(values, 0, None)
        depth = max(8, int(values.max()).bit_length())
        scaled = values / float(2**depth - 1)
    return Image.fromarray(np.round(scaled * 255.0).astype(np.uint8), mode="L")


def decode_image(path: str | Path, color: str, high_bit_depth: str = "rescale") -> Image.Image:
    """Open `path` and return it fully decoded in mode `color` ("L" or "RGB").

    `high_bit_depth` says how a 12/16-bit image becomes 8 bits (see HIGH_BIT_DEPTHS).
    A missing, truncated or undecodable file raises DataError naming the file.
    """
    if color not in ("L", "RGB"):
        raise ConfigError(f"unknown color mode {color!r} for {path}; use 'L' or 'RGB'")
    if high_bit_depth not in HIGH_BIT_DEPTHS:
        raise ConfigError(f"unknown high_bit_depth {high_bit_depth!r}; choose one of {', '.join(HIGH_BIT_DEPTHS)}")
    try:
        with Image.open(path) as opened:
            opened.load()  # force the full decode so truncated files fail here, not later
            image = opened
            if image.mode in _WIDE_MODES and high_bit_depth == "rescale":
                image = _wide_to_8bit(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                # Composite transparent pixels on black, the padding colour used everywhere else.
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, rgba)
            return image.convert(color)
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(
            f"cannot decode image {path}: {error}; replace or delete the file"
        ) from None


def _medclip_square(image: Image.Image, size: int) -> np.ndarray:
    """Grayscale, pad to a centred square with black, bicubic resize to size x size (MedCLIP)."""
    gray = image.convert("L")
    width, height = gray.size
    side = max(width, height)
    canvas = Image.new("L", (side, side), 0)
    canvas.paste(gray, ((side - width) // 2, (side - height) // 2))
    resized = canvas.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)[None]


def _clip_square(image: Image.Image, size: int) -> np.ndarray:
    """RGB, bicubic resize of the shorter side to `size`, centre crop (CLIP's clean view)."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    if width <= height:
        new_width, new_height = size, max(size, round(size * height / width))
    else:
        new_width, new_height = max(size, round(size * width / height)), size
    resized = rgb.resize((new_width, new_height), Image.Resampling.BICUBIC)
    left = round((new_width - size) / 2.0)
    top = round((new_height - size) / 2.0)
    cropped = resized.crop((left, top, left + size, top + size))
    return np.asarray(cropped, dtype=np.uint8).transpose(2, 0, 1)


def preprocess_image(image: Image.Image, preprocessing: str, size: int = 224) -> np.ndarray:
    """Return a (C, size, size) uint8 array: C = 1 for "medclip", 3 for "clip"."""
    check_preprocessing(preprocessing)
    if size < 1:
        raise ConfigError(f"image size must be positive, got {size}")
    if preprocessing == "medclip":
        return np.ascontiguousarray(_medclip_square(image, size))
    return np.ascontiguousarray(_clip_square(image, size))


def whole_image(image: Image.Image, preprocessing: str, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The whole image as a (C, size, size) uint8 square to crop strong views from, and the
    (height, width) its crops are drawn in.

    clip: RGB resized to the square whatever its aspect ratio; the original size is returned so
    crops keep the original's area and aspect ratio (the reference crops the full decoded image,
    including the borders the clean view's centre crop drops). medclip: its padded square, which
    already holds the whole image.
    """
    check_preprocessing(preprocessing)
    if preprocessing == "medclip":
        side = max(image.size)
        return np.ascontiguousarray(_medclip_square(image, size)), (side, side)
    rgb = image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)), (rgb.height, rgb.width)


def load_whole(path: str | Path, preprocessing: str, size: int,
               high_bit_depth: str = "rescale") -> tuple[np.ndarray, tuple[int, int]]:
    """Decode `path` and return `whole_image` of it."""
    color = "L" if check_preprocessing(preprocessing) == "medclip" else "RGB"
    return whole_image(decode_image(path, color, high_bit_depth), preprocessing, size)


def load_preprocessed(path: str | Path, preprocessing: str, size: int = 224,
                      high_bit_depth: str = "rescale") -> np.ndarray:
    """Decode `path` and preprocess it; the colour mode follows the preprocessing."""
    color = "L" if check_preprocessing(preprocessing) == "medclip" else "RGB"
    return preprocess_image(decode_image(path, color, high_bit_depth), preprocessing, size)


def normalize(batch: torch.Tensor, preprocessing: str) -> torch.Tensor:
    """Map a (B, C, S, S) batch (uint8 0-255, or float 0-1) to the encoder's normalised 3 channels.

    medclip: MedCLIP's single mean/std, then the channel repeated to 3 (MedCLIP repeats it too).
    clip: CLIP's per-channel mean/std; a 1-channel batch is repeated to RGB first.
    """
    check_preprocessing(preprocessing)
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise ConfigError(f"normalize expects a (B, 1|3, S, S) batch, got shape {tuple(batch.shape)}")
    values = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
    if preprocessing == "medclip":
        values = (values - MEDCLIP_MEAN) / MEDCLIP_STD
        return values.expand(-1, 3, -1, -1).contiguous() if values.shape[1] == 1 else values
    if values.shape[1] == 1:
        values = values.expand(-1, 3, -1, -1)
    mean = torch.tensor(CLIP_MEAN, dtype=values.dtype, device=values.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=values.dtype, device=values.device).view(1, 3, 1, 1)
    return (values - mean) / std
