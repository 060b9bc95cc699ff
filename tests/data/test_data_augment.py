"""Tensor views without torchvision: shapes, ranges, determinism, and each op checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from medguna.data.augment import (
    _crop_boxes,
    _hsv_to_rgb,
    _resized_crop_and_flip,
    _rgb_to_hsv,
    clean_view,
    gaussian_blur,
    strong_view,
)
from medguna.errors import ConfigError


def _batch(channels: int, size: int = 48, count: int = 5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("channels", [1, 3])
def test_strong_view_shape_range_and_determinism(channels):
    batch = _batch(channels)
    first = strong_view(batch, out_size=32, generator=torch.Generator().manual_seed(7))
    second = strong_view(batch, out_size=32, generator=torch.Generator().manual_seed(7))
    other = strong_view(batch, out_size=32, generator=torch.Generator().manual_seed(8))
    assert first.shape == (5, channels, 32, 32) and first.dtype == torch.float32
    assert 0.0 <= first.min().item() and first.max().item() <= 1.0
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    bilinear = strong_view(batch, out_size=32, generator=torch.Generator().manual_seed(7),
                           interpolation="bilinear")
    assert bilinear.shape == first.shape


def test_a_flat_image_stays_flat():
    """Crop, flip, jitter, grayscale and blur all map a constant image to a constant image."""
    batch = torch.full((6, 3, 40, 40), 128, dtype=torch.uint8)
    batch[:, 1] = 60
    out = strong_view(batch, out_size=24, generator=torch.Generator().manual_seed(1))
    per_image_spread = out.amax(dim=(2, 3)) - out.amin(dim=(2, 3))
    assert per_image_spread.max().item() < 1e-5


def test_crop_flip_keeps_intensity_and_colour_and_crops_at_least_60_percent():
    """The crop_flip strong view leaves a flat image's colour exactly as acquired (the reference
    recipe's jitter moves it), and its first draws crop what _crop_boxes draws at scale 0.6-1."""
    batch = torch.full((64, 3, 40, 40), 128, dtype=torch.uint8)
    batch[:, 1] = 60
    kept = strong_view(batch, out_size=24, generator=torch.Generator().manual_seed(1), augmentation="crop_flip")
    jittered = strong_view(batch, out_size=24, generator=torch.Generator().manual_seed(1))
    acquired = batch[:, :, :1, :1].float() / 255
    assert torch.allclose(kept, acquired.expand_as(kept), atol=1e-6)
    assert (jittered - acquired).abs().amax(dim=(1, 2, 3)).gt(0.01).sum() > 32  # most were jittered
    # A ramp shows the crop: a crop of at least 60% of a side spans at least ~60% of the ramp.
    ramp = torch.arange(40, dtype=torch.float32).repeat(40, 1)[None, None].expand(64, 1, 40, 40)
    views = strong_view((ramp * 6).to(torch.uint8), out_size=40, generator=torch.Generator().manual_seed(2),
                        augmentation="crop_flip")
    span = views.amax(dim=(1, 2, 3)) - views.amin(dim=(1, 2, 3))
    assert span.min().item() > 0.6 * 0.6 * 234 / 255  # area >= 0.6 and ratio <= 4/3: side >= ~0.67
    with pytest.raises(ConfigError, match="crop_flip"):
        strong_view(batch, augmentation="jitter")


def test_crop_boxes_follow_scale_and_ratio():
    boxes = _crop_boxes(2000, 60, 80, torch.Generator().manual_seed(0), torch.device("cpu"))
    top, left, height, width = boxes.unbind(dim=1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 60).all() and (left + width <= 80).all()
    share = height * width / (60 * 80)
    assert share.min().item() >= 0.2 * 0.9 and share.max().item() <= 1.0  # rounding slack
    ratio = width / height
    assert ratio.min().item() > 0.7 and ratio.max().item() < 1.4


def test_whole_image_box_is_identity_and_flip_mirrors():
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) / 16
    box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    same = _resized_crop_and_flip(ramp, box, torch.tensor([False]), 4, "bilinear")
    mirrored = _resized_crop_and_flip(ramp, box, torch.tensor([True]), 4, "bilinear")
    assert torch.allclose(same, ramp, atol=1e-6)
    assert torch.allclose(mirrored, ramp.flip(-1), atol=1e-6)
    # the right half (columns 2-3) upscaled 2x: output centres land at input x = 1.75, 2.25, 2.75,
    # 3.25 (pixel-centre units); the last clamps to the border column. Sampling the box from the full
    # image lets the first one blend with column 1, just outside the box.
    half = _resized_crop_and_flip(ramp, torch.tensor([[0.0, 2.0, 4.0, 2.0]]), torch.tensor([False]), 4,
                                  "bilinear")
    assert torch.allclose(half[0, 0, 0], torch.tensor([1.75, 2.25, 2.75, 3.0]) / 16, atol=1e-6)


def test_gaussian_blur_preserves_mass_and_matches_a_hand_kernel():
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    sigma = 1.0
    out = gaussian_blur(impulse, torch.tensor([sigma]))
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)
    weights = [math.exp(-(x * x) / (2 * sigma**2)) for x in range(-3, 4)]
    norm = sum(weights)
    assert out[0, 0, 10, 10].item() == pytest.approx((weights[3] / norm) ** 2, rel=1e-5)
    assert out[0, 0, 10, 11].item() == pytest.approx(weights[3] * weights[4] / norm**2, rel=1e-5)
    near_identity = gaussian_blur(impulse, torch.tensor([0.1]))
    assert near_identity[0, 0, 10, 10].item() > 0.999


def test_hsv_round_trip_and_hue_rotation():
    colours = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(colours)), colours, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    hsv = _rgb_to_hsv(red)
    assert hsv.flatten().tolist() == pytest.approx([0.0, 1.0, 1.0])
    hsv[:, 0] = 1 / 3
    assert _hsv_to_rgb(hsv).flatten().tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)


def test_clean_view_scales_and_resizes():
    batch = torch.tensor([[[[0, 51], [102, 255]]]], dtype=torch.uint8)
    assert clean_view(batch, 2).flatten().tolist() == pytest.approx([0.0, 0.2, 0.4, 1.0])
    resized = clean_view(_batch(3, size=48), 32)
    assert resized.shape == (5, 3, 32, 32) and 0 <= resized.min() and resized.max() <= 1


def test_bad_arguments():
    with pytest.raises(ConfigError, match="interpolation must be"):
        strong_view(_batch(1), interpolation="nearest")
    with pytest.raises(ConfigError, match=r"got shape \(48, 48\)"):
        clean_view(torch.zeros(48, 48, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_views_on_gpu_for_the_same_seed():
    batch = _batch(3)
    cpu = strong_view(batch, out_size=32, generator=torch.Generator().manual_seed(5))
    gpu = strong_view(batch.cuda(), out_size=32, generator=torch.Generator().manual_seed(5))
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-3)


def test_whole_image_crops_follow_the_original_size_and_reach_its_borders():
    """strong_view_source=whole (docs/method.md §5.4): boxes are drawn in each image's original
    size, as the reference's RandomResizedCrop on the full decoded image, so they reach the
    borders a centre crop drops; the box is then read from the whole image's cached square."""
    generator = torch.Generator().manual_seed(0)
    sizes = torch.tensor([[100.0, 400.0]]).expand(2000, 2)
    boxes = _crop_boxes(2000, sizes[:, 0], sizes[:, 1], generator, torch.device("cpu"))
    top, left, height, width = boxes.unbind(dim=1)
    assert bool(((top >= 0) & (left >= 0) & (top + height <= 100) & (left + width <= 400)).all())
    # A centre crop of this 4:1 image keeps columns 150-250 only; whole-image crops start left of it.
    assert float((left < 150).float().mean()) > 0.3
    # Same box in original pixels of a (10, 40) image or in pixels of its 4 x 4 square: same view.
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) / 16
    no_flip = torch.tensor([False])
    in_original = _resized_crop_and_flip(ramp, torch.tensor([[0.0, 0.0, 10.0, 20.0]]), no_flip, 4, "bilinear",
                                         sizes=torch.tensor([[10.0, 40.0]]))
    in_square = _resized_crop_and_flip(ramp, torch.tensor([[0.0, 0.0, 4.0, 2.0]]), no_flip, 4, "bilinear")
    torch.testing.assert_close(in_original, in_square)
    # Sizes equal to the tensor's own: exactly the square path.
    batch = _batch(3, size=16, count=3)
    plain = strong_view(batch, out_size=8, generator=torch.Generator().manual_seed(4))
    sized = strong_view(batch, out_size=8, generator=torch.Generator().manual_seed(4),
                        sizes=torch.tensor([[16, 16]] * 3))
    torch.testing.assert_close(plain, sized)
