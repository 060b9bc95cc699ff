"""Acquisition shifts: how images of the same anatomy differ between hospitals, as named transforms.

A synthetic stand-in drawn from medguna's class-dependent generators is the *source* domain (what the
demonstration encoder was pretrained on). Applying shifts gives a *target* domain that differs the
way a new site does: another detector's response curve and dose, another camera's colour and lens,
another compression setting. Each shift takes a strength in [0, 1]; 0 leaves the image unchanged.

A shift specification is a string such as ``"gamma=0.6,noise=0.4"`` (applied in the order given),
``"none"``, or a preset name from ``PRESETS``.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from medguna.errors import ConfigError

Shift = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _gamma(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A different detector response / exposure: midtones darkened by a gamma curve up to 2.2."""
    return np.power(np.clip(image, 0.0, 1.0), 1.0 + 1.2 * strength)


def _contrast(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Lower dynamic range (scatter, an older detector): values pulled towards a raised grey level."""
    keep = 1.0 - 0.6 * strength
    return image * keep + (1.0 - keep) * 0.55


def _noise(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise at a lower dose: signal-dependent (quantum) plus additive (read-out) noise."""
    sigma = 0.12 * strength
    quantum = rng.normal(0.0, 1.0, image.shape) * sigma * np.sqrt(np.clip(image, 0.0, 1.0))
    readout = rng.normal(0.0, 0.35 * sigma, image.shape)
    return image + quantum + readout


def _blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A softer system point-spread function (detector, focus, motion): Gaussian blur."""
    radius = strength * 0.015 * min(image.shape[:2])
    if radius <= 0:
        return image
    return _from_pil(_to_pil(image).filter(ImageFilter.GaussianBlur(radius)), image)


def _response_curve(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Another detector's characteristic curve: an S-shaped (film-like) response instead of a linear
    one, steeper with strength. Monotone, so every grey level stays distinguishable."""
    steepness = 10.0 * strength
    if steepness <= 0:
        return image
    low, high = _sigmoid(-0.5 * steepness), _sigmoid(0.5 * steepness)
    return (_sigmoid(steepness * (image - 0.5)) - low) / (high - low)


def _window(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Another site's window and level at export: a narrower window set lower, values outside it
    clipped (up to the darkest 20% and the brightest 15% of the range at strength 1)."""
    low, high = 0.2 * strength, 1.0 - 0.15 * strength
    return (image - low) / (high - low)


def _exposure(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A lower exposure (an underexposed film): dark regions lifted towards white, up to half the
    way at strength 1, so aerated lungs look hazier; linear, so every structure stays visible."""
    return 1.0 - (1.0 - image) * (1.0 - 0.5 * strength)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _vignetting(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Lens fall-off: corners darker than the centre."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((xs - width / 2) / (width / 2), (ys - height / 2) / (height / 2)) / np.sqrt(2)
    gain = 1.0 - 0.7 * strength * radius**2
    return image * (gain[..., None] if image.ndim == 3 else gain)


def _field_of_view(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Tighter collimation / framing: a crop around a jittered centre, scaled back to the frame."""
    height, width = image.shape[:2]
    keep = 1.0 - 0.3 * strength
    crop_h, crop_w = max(8, round(height * keep)), max(8, round(width * keep))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    cropped = image[top:top + crop_h, left:left + crop_w]
    return _from_pil(_to_pil(cropped).resize((width, height), Image.Resampling.BICUBIC), image)


def _colour_cast(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Another camera's white balance: red raised, blue lowered (colour images only)."""
    if image.ndim != 3:
        return image
    gains = np.array([1.0 + 0.25 * strength, 1.0 - 0.05 * strength, 1.0 - 0.3 * strength])
    return image * gains[None, None, :]


def _jpeg(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Stronger lossy compression by the archive (PACS export): a JPEG round trip."""
    quality = round(95 - 85 * strength)
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="JPEG", quality=quality)
    return _from_pil(Image.open(buffer), image)


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8))


def _from_pil(pil: Image.Image, like: np.ndarray) -> np.ndarray:
    out = np.asarray(pil.convert("RGB" if like.ndim == 3 else "L"), dtype=np.float32) / 255.0
    return out


SHIFTS: dict[str, Shift] = {
    "gamma": _gamma,
    "contrast": _contrast,
    "noise": _noise,
    "blur": _blur,
    "vignetting": _vignetting,
    "response_curve": _response_curve,
    "window": _window,
    "exposure": _exposure,
    "field_of_view": _field_of_view,
    "colour_cast": _colour_cast,
    "jpeg": _jpeg,
}

# The demonstration's target domains, one per modality: an underexposed film for X-rays; another
# fundus camera (white balance, lens fall-off, focus, exposure); another dermoscope and archive
# (white balance, framing, compression). The chest X-ray preset was redesigned against a validity
# rule fixed beforehand (docs/demonstration.md: zero-shot in range, a supervised linear probe's
# headroom, a validation split that can select), measured on a design draw with the probe alone;
# the earlier one (gamma, contrast, noise and blur at 0.4) left no headroom. The fundus preset failed
# the same rule's headroom and was redesigned the same way (its gamma 0.3 -> 0.6); dermoscopy passed
# and is as first set from the encoder's zero-shot. None was changed after seeing an adaptation result.
PRESETS: dict[str, str] = {
    "chest_xray": "exposure=0.11",
    "fundus": "colour_cast=0.5,vignetting=0.5,blur=0.3,gamma=0.6",
    "dermoscopy": "colour_cast=0.7,field_of_view=0.5,noise=0.4,jpeg=0.7",
}
NO_SHIFT = "none"


def parse_shift(spec: str, modality: str | None = None) -> list[tuple[str, float]]:
    """``"gamma=0.6,noise=0.4"`` -> [("gamma", 0.6), ("noise", 0.4)]; "none" -> []; "demo" -> preset.

    ``"demo"`` needs the modality: it names that modality's entry of PRESETS.
    """
    text = str(spec).strip()
    if text in ("", NO_SHIFT):
        return []
    if text == "demo":
        if modality not in PRESETS:
            raise ConfigError(f"the 'demo' shift needs a modality in {sorted(PRESETS)}, got {modality!r}")
        text = PRESETS[modality]
    shifts = []
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if name not in SHIFTS or not sep:
            raise ConfigError(
                f"bad shift {part.strip()!r} in {spec!r}: write name=strength, comma-separated, with "
                f"names from {', '.join(SHIFTS)} (or 'none', or 'demo' for the modality's preset)"
            )
        try:
            strength = float(value)
        except ValueError:
            raise ConfigError(f"shift {name!r} has strength {value!r}: give a number in [0, 1]") from None
        if not 0.0 <= strength <= 1.0:
            raise ConfigError(f"shift {name!r} has strength {strength}: it must be in [0, 1]")
        shifts.append((name, strength))
    return shifts


def canonical_shift(spec: str, modality: str | None = None) -> str:
    """The shift written out in full ("demo" resolved), for file names, markers and result rows."""
    shifts = parse_shift(spec, modality)
    return ",".join(f"{name}={strength:g}" for name, strength in shifts) if shifts else NO_SHIFT


def apply_shifts(image: np.ndarray, shifts: list[tuple[str, float]], rng: np.random.Generator) -> np.ndarray:
    """`image` (float in [0, 1], (H, W) or (H, W, 3)) under each shift in turn, clipped to [0, 1]."""
    out = image.astype(np.float32, copy=False)
    for name, strength in shifts:
        if strength > 0:
            out = np.clip(SHIFTS[name](out, strength, rng), 0.0, 1.0).astype(np.float32)
    return out


def check_shift(spec: str, dataset: str) -> str:
    """The canonical shift of `dataset`'s stand-in, or a ConfigError naming data.synthetic_shift."""
    from medguna.data.datasets import get_dataset

    try:
        return canonical_shift(spec, get_dataset(dataset).modality)
    except ConfigError as error:
        raise ConfigError(f"data.synthetic_shift={spec!r}: {error}") from None


def acquisition_text(spec: str, dataset: str, draw: int) -> str:
    """How banners name a stand-in's acquisition: its checked shift, and its draw unless the default."""
    return f"acquisition shift {check_shift(spec, dataset)}" + (f", image draw {draw}" if draw else "")


def shift_slug(canonical: str) -> str:
    """A short folder-name-safe tag of a canonical shift: "" for none, else "-shift<8 hex>"."""
    import hashlib

    if canonical == NO_SHIFT:
        return ""
    return "-shift" + hashlib.sha256(canonical.encode()).hexdigest()[:8]
