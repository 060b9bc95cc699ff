"""Batched tensor augmentations for the two views of stage 2 (docs/method.md §4), no torchvision.

Random numbers come from the caller's generator (on its device, CPU by default) and are moved to
the batch's device, so a seeded generator gives the same views on CPU and GPU up to float rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medguna.config import STRONG_VIEW_AUGMENTATIONS
from medguna.errors import ConfigError

CROP_SCALE = (0.2, 1.0)
CROP_FLIP_SCALE = (0.6, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER_PROBABILITY = 0.8
BRIGHTNESS = CONTRAST = SATURATION = 0.4
HUE = 0.1
GRAYSCALE_PROBABILITY = 0.2
BLUR_SIGMA = (0.1, 2.0)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL and torchvision use for grayscale


def _as_unit_float(batch: torch.Tensor) -> torch.Tensor:
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise ConfigError(f"expected a (B, 1|3, H, W) image batch, got shape {tuple(batch.shape)}")
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    where = generator.device if generator is not None else torch.device("cpu")
    values = torch.rand(shape, generator=generator, device=where) * (high - low) + low
    return values.to(device)


def _crop_boxes(batch_size: int, height, width, generator: torch.Generator | None,
                device: torch.device, attempts: int = 10,
                scale: tuple[float, float] = CROP_SCALE) -> torch.Tensor:
    """RandomResizedCrop boxes (top, left, h, w) per image: up to `attempts` draws, else a centre crop.

    `height` and `width` are one size for the batch or one per image (B,), in the pixels the boxes
    are drawn in (an image's original size when the batch holds whole images resized to a square).
    """
    height = torch.as_tensor(height, dtype=torch.float32, device=device).expand(batch_size)
    width = torch.as_tensor(width, dtype=torch.float32, device=device).expand(batch_size)
    area = (height * width)[:, None]
    target = area * _uniform((batch_size, attempts), *scale, generator, device)
    log_ratio = _uniform((batch_size, attempts), math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]),
                         generator, device)
    aspect = torch.exp(log_ratio)
    crop_w = torch.round(torch.sqrt(target * aspect))
    crop_h = torch.round(torch.sqrt(target / aspect))
    valid = (crop_w > 0) & (crop_w <= width[:, None]) & (crop_h > 0) & (crop_h <= height[:, None])
    first = valid.float().argmax(dim=1, keepdim=True)  # index of the first valid attempt
    found = valid.any(dim=1)
    chosen_w = crop_w.gather(1, first).squeeze(1)
    chosen_h = crop_h.gather(1, first).squeeze(1)
    # Fallback (no valid draw): the whole image, clamped to the ratio range, centred.
    in_ratio = width / height
    fallback_w = torch.where(in_ratio > CROP_RATIO[1], torch.round(height * CROP_RATIO[1]), width)
    fallback_h = torch.where(in_ratio < CROP_RATIO[0], torch.round(width / CROP_RATIO[0]), height)
    chosen_w = torch.where(found, chosen_w, fallback_w)
    chosen_h = torch.where(found, chosen_h, fallback_h)
    u_top = _uniform((batch_size,), 0.0, 1.0, generator, device)
    u_left = _uniform((batch_size,), 0.0, 1.0, generator, device)
    top = torch.where(found, torch.floor(u_top * (height - chosen_h + 1)), torch.floor((height - chosen_h) / 2))
    left = torch.where(found, torch.floor(u_left * (width - chosen_w + 1)), torch.floor((width - chosen_w) / 2))
    return torch.stack([top, left, chosen_h, chosen_w], dim=1)


def _resized_crop_and_flip(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor,
                           out_size: int, interpolation: str, sizes: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each box, resize to out_size and mirror where `flip`, in one grid_sample.

    Boxes are in pixels of the tensor, or of `sizes` (B, 2: height, width) when each tensor image is
    a whole image of that size resized to the tensor's square.
    """
    batch_size, channels, height, width = images.shape
    if sizes is not None:
        height, width = sizes[:, 0].to(images.dtype), sizes[:, 1].to(images.dtype)
    top, left, crop_h, crop_w = boxes.unbind(dim=1)
    # With align_corners=False, [-1, 1] spans pixel edges 0..W, so a box maps exactly onto the output.
    centre_x = (left + crop_w / 2) / width * 2 - 1
    centre_y = (top + crop_h / 2) / height * 2 - 1
    theta = torch.zeros(batch_size, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = crop_w / width * torch.where(flip, -1.0, 1.0)
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = crop_h / height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [batch_size, channels, out_size, out_size], align_corners=False)
    sampled = F.grid_sample(images, grid, mode=interpolation, padding_mode="border", align_corners=False)
    return sampled.clamp(0.0, 1.0)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of an RGB batch (a 1-channel batch is returned as is)."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * other).clamp(0.0, 1.0)


def _rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    red, green, blue = images.unbind(dim=1)
    maximum, _ = images.max(dim=1)
    minimum, _ = images.min(dim=1)
    delta = maximum - minimum
    # Where maximum (or delta) is 0 the numerator is 0 too, so a tiny floor gives the right 0.
    saturation = delta / maximum.clamp_min(1e-12)
    safe_delta = delta.clamp_min(1e-12)
    hue_red = torch.remainder((green - blue) / safe_delta, 6.0)
    hue_green = (blue - red) / safe_delta + 2.0
    hue_blue = (red - green) / safe_delta + 4.0
    hue = torch.where(maximum == red, hue_red, torch.where(maximum == green, hue_green, hue_blue))
    hue = torch.where(delta > 0, hue / 6.0, 0.0)
    return torch.stack([torch.remainder(hue, 1.0), saturation, maximum], dim=1)


def _hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Inverse of _rgb_to_hsv: channel = v - v*s*clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6,
    with n = 5, 3, 1 for red, green, blue (the closed form of the six-sector table)."""
    hue, saturation, value = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    offsets = torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    k = torch.remainder(offsets + hue * 6.0, 6.0)
    return value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def _adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(images)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(hsv).clamp(0.0, 1.0)


def _color_jitter(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8: per image factors and a per image op order."""
    batch_size, channels = images.shape[:2]
    device = images.device
    applied = _uniform((batch_size,), 0.0, 1.0, generator, device) < JITTER_PROBABILITY
    factors = torch.stack([
        _uniform((batch_size,), 1 - BRIGHTNESS, 1 + BRIGHTNESS, generator, device),
        _uniform((batch_size,), 1 - CONTRAST, 1 + CONTRAST, generator, device),
        _uniform((batch_size,), 1 - SATURATION, 1 + SATURATION, generator, device),
        _uniform((batch_size,), -HUE, HUE, generator, device),
    ], dim=1)
    order = torch.argsort(_uniform((batch_size, 4), 0.0, 1.0, generator, device), dim=1)

    def apply(op: int, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        if op == 0:
            return (x * factor.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
        if op == 1:
            mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
            return _blend(x, mean.expand_as(x), factor)
        if op == 2:
            return _blend(x, _grayscale(x).expand_as(x), factor)
        return _adjust_hue(x, factor)

    # Saturation and hue do not exist for grayscale images.
    ops = range(4) if channels == 3 else range(2)
    images = images.clone()
    for position in range(4):
        for op in ops:
            # Work only on the images that run this op at this position: no wasted full-batch passes.
            chosen = torch.nonzero(applied & (order[:, position] == op)).flatten()
            if chosen.numel():
                images[chosen] = apply(op, images[chosen], factors[chosen, op])
    return images


def _random_grayscale(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    chosen = _uniform((images.shape[0],), 0.0, 1.0, generator, images.device) < GRAYSCALE_PROBABILITY
    if images.shape[1] == 1:
        return images
    gray = _grayscale(images).expand_as(images)
    return torch.where(chosen.view(-1, 1, 1, 1), gray, images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (separable, reflect padding, kernel radius 3 * max sigma)."""
    batch_size, channels, height, width = images.shape
    radius = max(1, min(math.ceil(3 * float(sigma.max())), (min(height, width) - 1)))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (B, K)
    kernels = kernels.repeat_interleave(channels, dim=0)  # one kernel per (image, channel)
    flat = images.reshape(1, batch_size * channels, height, width)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, 2 * radius + 1), groups=batch_size * channels)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, 2 * radius + 1, 1), groups=batch_size * channels)
    return flat.reshape(batch_size, channels, height, width)


def strong_view(
    batch: torch.Tensor,
    *,
    out_size: int = 224,
    generator: torch.Generator | None = None,
    interpolation: str = "bicubic",
    sizes: torch.Tensor | None = None,
    augmentation: str = "reference",
) -> torch.Tensor:
    """The student's strong view of a (B, C, H, W) uint8 batch: float (B, C, out, out) in [0, 1].

    "reference": RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3) -> horizontal flip p 0.5 ->
    ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8 -> RandomGrayscale p 0.2 -> Gaussian blur, sigma ~ U[0.1, 2].
    "crop_flip": RandomResizedCrop(scale 0.6-1, same ratios) -> horizontal flip p 0.5, nothing else.
    `sizes` (B, 2): each image's original (height, width) when the batch holds whole images resized
    to a square; the crops then follow the original's area and aspect ratio, as the reference's do.
    """
    if interpolation not in ("bicubic", "bilinear"):
        raise ConfigError(f"interpolation must be 'bicubic' or 'bilinear', got {interpolation!r}")
    if augmentation not in STRONG_VIEW_AUGMENTATIONS:
        raise ConfigError(f"strong view augmentation must be one of {STRONG_VIEW_AUGMENTATIONS}, "
                          f"got {augmentation!r}")
    scale = CROP_SCALE if augmentation == "reference" else CROP_FLIP_SCALE
    images = _as_unit_float(batch)
    batch_size, _, height, width = images.shape
    if batch_size == 0:
        return images.new_zeros((0, images.shape[1], out_size, out_size))
    device = images.device
    if sizes is not None:
        sizes = sizes.to(device=device, dtype=torch.float32)
        boxes = _crop_boxes(batch_size, sizes[:, 0], sizes[:, 1], generator, device, scale=scale)
    else:
        boxes = _crop_boxes(batch_size, height, width, generator, device, scale=scale)
    flip = _uniform((batch_size,), 0.0, 1.0, generator, device) < 0.5
    images = _resized_crop_and_flip(images, boxes, flip, out_size, interpolation, sizes)
    if augmentation == "crop_flip":
        return images  # already clamped to [0, 1] by the crop
    images = _color_jitter(images, generator)
    images = _random_grayscale(images, generator)
    sigma = _uniform((batch_size,), *BLUR_SIGMA, generator, device)
    return gaussian_blur(images, sigma).clamp(0.0, 1.0)


def crop_flip_view(batch: torch.Tensor, *, out_size: int = 224, generator: torch.Generator | None = None,
                   scale: tuple[float, float] = (0.6, 1.0)) -> torch.Tensor:
    """A mild view (random resized crop of `scale` and a horizontal flip, nothing photometric).

    What CLIP-style pretraining uses: it leaves intensity and colour as acquired, so an encoder
    trained with it stays sensitive to acquisition shifts, as real pretrained encoders are.
    """
    images = _as_unit_float(batch)
    batch_size, _, height, width = images.shape
    device = images.device
    boxes = _crop_boxes(batch_size, height, width, generator, device, scale=scale)
    flip = _uniform((batch_size,), 0.0, 1.0, generator, device) < 0.5
    return _resized_crop_and_flip(images, boxes, flip, out_size, "bilinear")


def clean_view(batch: torch.Tensor, out_size: int = 224) -> torch.Tensor:
    """The teacher's clean view: the cached image as float [0, 1], resized only if sizes differ."""
    images = _as_unit_float(batch)
    if images.shape[-2:] == (out_size, out_size):
        return images
    resized = F.interpolate(images, size=(out_size, out_size), mode="bicubic", align_corners=False,
                            antialias=True)
    return resized.clamp(0.0, 1.0)
