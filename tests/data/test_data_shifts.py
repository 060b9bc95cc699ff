"""Acquisition shifts: parsing, each transform's effect on known pixels, and shifted stand-ins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medguna.data.manifest import SYNTHETIC_MARKER
from medguna.data.shifts import (
    PRESETS,
    apply_shifts,
    canonical_shift,
    parse_shift,
)
from medguna.data.synthetic import synthesize
from medguna.errors import ConfigError, DataError


def test_parse_names_strengths_presets_and_none():
    assert parse_shift("gamma=0.6, noise=0.4") == [("gamma", 0.6), ("noise", 0.4)]
    assert parse_shift("none") == [] and parse_shift("") == []
    assert parse_shift("demo", "fundus") == parse_shift(PRESETS["fundus"])
    assert canonical_shift("demo", "chest_xray") == PRESETS["chest_xray"]
    assert canonical_shift("none") == "none"


@pytest.mark.parametrize("bad, words", [
    ("gamma", "name=strength"),
    ("sharpen=0.3", "names from"),
    ("noise=1.5", "[0, 1]"),
    ("noise=lots", "give a number"),
])
def test_bad_shifts_name_what_is_wrong(bad, words):
    with pytest.raises(ConfigError, match="shift") as info:
        parse_shift(bad)
    assert words in str(info.value)


def test_each_shift_on_known_pixels():
    rng = np.random.default_rng(0)
    flat = np.full((20, 30), 0.5, dtype=np.float32)
    # gamma: 0.5 ** (1 + 1.2 * 0.5) = 0.5 ** 1.6
    assert np.allclose(apply_shifts(flat, [("gamma", 0.5)], rng), 0.5**1.6, atol=1e-6)
    # contrast at full strength keeps 40% of the signal around a grey level of 0.55
    assert np.allclose(apply_shifts(np.zeros_like(flat), [("contrast", 1.0)], rng), 0.6 * 0.55, atol=1e-6)
    # strength 0 is the identity, whatever the shift
    assert np.array_equal(apply_shifts(flat, [("noise", 0.0), ("blur", 0.0)], rng), flat)
    # vignetting: the corner loses 0.7 * strength of its value, the centre almost nothing
    vignetted = apply_shifts(np.ones((101, 101), dtype=np.float32), [("vignetting", 1.0)], rng)
    assert vignetted[50, 50] == pytest.approx(1.0, abs=1e-3)
    assert vignetted[0, 0] == pytest.approx(0.3, abs=0.02)
    # colour cast: red up, blue down on colour images; grey images untouched
    rgb = apply_shifts(np.full((4, 4, 3), 0.5, dtype=np.float32), [("colour_cast", 1.0)], rng)
    assert rgb[0, 0, 0] == pytest.approx(0.625) and rgb[0, 0, 2] == pytest.approx(0.35)
    assert np.array_equal(apply_shifts(flat, [("colour_cast", 1.0)], rng), flat)
    # noise: zero-mean, with the spread the strength sets
    noisy = apply_shifts(np.full((200, 200), 0.5, dtype=np.float32), [("noise", 1.0)], rng)
    assert abs(float(noisy.mean()) - 0.5) < 0.01 and 0.07 < float(noisy.std()) < 0.11
    # blur removes high frequencies: a checkerboard's contrast falls
    board = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    assert apply_shifts(board, [("blur", 1.0)], rng).std() < 0.2 * board.std()
    # field of view: same frame size, content zoomed in
    assert apply_shifts(flat, [("field_of_view", 1.0)], rng).shape == flat.shape
    # jpeg: lossy, but close
    assert np.abs(apply_shifts(flat + 0.1 * board[:20, :30], [("jpeg", 1.0)], rng) - flat).max() < 0.2


def test_shifted_stand_in_shows_the_same_anatomy_acquired_differently(tmp_path):
    source = synthesize("shenzhen", tmp_path / "source", seed=0, scale=0.1)
    target = synthesize("shenzhen", tmp_path / "target", seed=0, scale=0.1, shift="demo")
    marker = json.loads((target / SYNTHETIC_MARKER).read_text())
    assert marker["shift"] == PRESETS["chest_xray"]
    assert json.loads((source / SYNTHETIC_MARKER).read_text())["shift"] == "none"
    names = sorted(p.name for p in (source / "CXR_png").glob("*.png"))
    assert names == sorted(p.name for p in (target / "CXR_png").glob("*.png"))
    a = np.asarray(Image.open(source / "CXR_png" / names[0]), dtype=np.float32)
    b = np.asarray(Image.open(target / "CXR_png" / names[0]), dtype=np.float32)
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8  # same drawing under another acquisition
    # The demo X-ray shift is an underexposed film: every grey level lifted towards white by 5.5%
    # of its distance (1 - 0.5 * 0.11), up to rounding to 8 bits.
    assert np.abs(b - (255 - (255 - a) * (1 - 0.5 * 0.11))).max() <= 1.0
    assert b.mean() > a.mean()
    # the folder is reusable only with the same shift
    assert synthesize("shenzhen", tmp_path / "target", seed=0, scale=0.1, shift="demo") == target
    with pytest.raises(DataError, match="shift"):
        synthesize("shenzhen", tmp_path / "target", seed=0, scale=0.1, shift="none")


def test_the_acquisition_curves_keep_every_grey_level_in_order():
    from medguna.data.shifts import SHIFTS

    rng = np.random.default_rng(0)
    levels = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    # exposure 0.5: 1 - (1 - x) * 0.75, so 0 -> 0.25, 0.2 -> 0.4, 1 -> 1.
    assert np.allclose(SHIFTS["exposure"](levels, 0.5, rng)[[0, 2, 10]], [0.25, 0.4, 1.0])
    # window 1.0: (x - 0.2) / 0.65, so 0.2 -> 0 and 0.85 -> 1 (apply_shifts clips beyond).
    assert np.allclose(SHIFTS["window"](np.array([0.2, 0.85]), 1.0, rng), [0.0, 1.0])
    # response_curve: an S-curve through the ends, 0.5 fixed, steeper in the middle than linear.
    curve = SHIFTS["response_curve"](levels, 0.6, rng)
    assert np.allclose(curve[[0, 5, 10]], [0.0, 0.5, 1.0], atol=1e-6)
    assert np.all(np.diff(curve) > 0) and curve[6] - curve[4] > 0.2
