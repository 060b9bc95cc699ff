"""Decoding (incl. 12/16-bit PNGs), the two square preprocessings, and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medguna.data.images import (
    CLIP_MEAN,
    CLIP_STD,
    MEDCLIP_MEAN,
    MEDCLIP_STD,
    decode_image,
    load_preprocessed,
    normalize,
    preprocess_image,
)
from medguna.errors import ConfigError


def test_12_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 2048, 4095]], dtype=np.uint16)
    path = tmp_path / "MCUCXR_0001_0.png"
    Image.fromarray(values).save(path)
    decoded = np.asarray(decode_image(path, "L"))
    # 12-bit effective depth: v / 4095 * 255 -> 0, 62.27, 127.53, 255
    assert decoded.tolist() == [[0, 62, 128, 255]]


def test_12_bit_png_clipped_as_the_reference_only_when_asked(tmp_path):
    """method.high_bit_depth=clip reproduces the reference's convert("RGB"): every grey level above
    255 of a 12-bit image becomes white (docs/method.md §5.9); the cache keeps the two apart."""
    from medguna.data.cache import build_image_cache, cache_key

    values = np.array([[0, 200, 256, 4095]], dtype=np.uint16)
    path = tmp_path / "MCUCXR_0002_1.png"
    Image.fromarray(values).save(path)
    assert np.asarray(decode_image(path, "RGB", "clip"))[..., 0].tolist() == [[0, 200, 255, 255]]
    assert np.asarray(decode_image(path, "RGB"))[..., 0].tolist() == [[0, 12, 16, 255]]  # v / 4095 * 255
    assert cache_key([path], "clip", 4, "clip") != cache_key([path], "clip", 4) == cache_key([path], "clip", 4, "rescale")
    clipped = build_image_cache([path], "clip", 4, tmp_path / "cache", progress=False, high_bit_depth="clip")
    rescaled = build_image_cache([path], "clip", 4, tmp_path / "cache", progress=False)
    assert clipped.float().mean() > 2 * rescaled.float().mean()  # most of the image whitened
    with pytest.raises(ConfigError, match="unknown high_bit_depth 'wrap'"):
        decode_image(path, "L", "wrap")


def test_whole_image_keeps_the_borders_the_clip_centre_crop_drops():
    from medguna.data.images import whole_image

    pixels = np.zeros((10, 40, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)  # a red left quarter
    image = Image.fromarray(pixels)
    assert preprocess_image(image, "clip", size=8)[0].max() == 0  # the centre crop has no red
    square, size = whole_image(image, "clip", 8)
    assert size == (10, 40) and square.shape == (3, 8, 8)
    assert square[0, :, 0].min() > 200 and square[0, :, -1].max() == 0
    padded, padded_size = whole_image(image, "medclip", 8)  # MedCLIP's padded square is already whole
    np.testing.assert_array_equal(padded, preprocess_image(image, "medclip", size=8))
    assert padded_size == (40, 40)


def test_full_16_bit_png_uses_16_bit_depth(tmp_path):
    values = np.array([[0, 30000, 65535]], dtype=np.uint16)
    path = tmp_path / "wide.png"
    Image.fromarray(values).save(path)
    assert np.asarray(decode_image(path, "L")).tolist() == [[0, 117, 255]]  # 30000/65535*255 = 116.7
    assert np.asarray(decode_image(path, "RGB")).shape == (1, 3, 3)


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # invisible red
    rgba[0, 1] = (0, 255, 0, 255)  # opaque green
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    assert np.asarray(decode_image(path, "RGB")).tolist() == [[[0, 0, 0], [0, 255, 0]]]


def test_medclip_pads_to_a_centred_black_square():
    image = Image.fromarray(np.full((2, 4), 200, dtype=np.uint8))  # 4 wide, 2 high
    square = preprocess_image(image, "medclip", size=4)
    assert square.shape == (1, 4, 4) and square.dtype == np.uint8
    assert square[0].tolist() == [[0] * 4, [200] * 4, [200] * 4, [0] * 4]


def test_clip_resizes_shorter_side_and_centre_crops():
    columns = np.arange(6, dtype=np.uint8) * 40  # 0, 40, ..., 200 across a 6 x 4 image
    pixels = np.broadcast_to(columns[None, :, None], (4, 6, 3)).copy()
    square = preprocess_image(Image.fromarray(pixels), "clip", size=4)
    assert square.shape == (3, 4, 4)
    # shorter side already 4, so only the crop acts: columns 1..4 survive
    assert square[0, 0].tolist() == [40, 80, 120, 160]
    halved = preprocess_image(Image.fromarray(pixels).resize((12, 8)), "clip", size=4)
    assert halved.shape == (3, 4, 4)


def test_load_preprocessed_of_a_colour_file_in_medclip_is_grayscale(synthetic_roots):
    path = next((synthetic_roots["idrid"]).rglob("IDRiD_001.jpg"))
    assert load_preprocessed(path, "medclip", 32).shape == (1, 32, 32)
    assert load_preprocessed(path, "clip", 32).shape == (3, 32, 32)


def test_normalize_medclip_repeats_the_channel():
    batch = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    out = normalize(batch, "medclip")
    assert out.shape == (2, 3, 2, 2) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.full((3, 2, 2), -MEDCLIP_MEAN / MEDCLIP_STD))
    assert out[1, 2, 1, 1].item() == pytest.approx((1 - 0.5862785803043838) / 0.27950088968644304)


def test_normalize_clip_per_channel():
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(batch, "clip")
    expected = [(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)]
    assert out[0, :, 0, 0].tolist() == pytest.approx(expected)
    assert normalize(batch[:, :1], "clip").shape == (1, 3, 2, 2)


def test_bad_preprocessing_and_shapes():
    with pytest.raises(ConfigError, match="unknown preprocessing 'imagenet'"):
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), "imagenet")
    with pytest.raises(ConfigError, match=r"got shape \(3, 2, 2\)"):
        normalize(torch.zeros(3, 2, 2, dtype=torch.uint8), "clip")
    with pytest.raises(ConfigError, match="unknown color mode 'CMYK'"):
        decode_image("whatever.png", "CMYK")
