"""Procedural drawings for the synthetic stand-ins: chest X-rays, fundus photographs, skin lesions.

Each function takes a seeded numpy Generator and returns a float image in [0, 1] ((H, W) gray or
(H, W, 3) RGB) whose structure depends on the class, so a model can learn something from it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates scaled to [0, 1]."""
    rows = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    cols = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width
    return rows, cols


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)


def _soft_ellipse(rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float],
                  radii: tuple[float, float], sharpness: float = 12.0) -> np.ndarray:
    distance = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2
    return 1.0 / (1.0 + np.exp(np.clip((distance - 1.0) * sharpness, -40, 40)))


def _blob(rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    return np.exp(-(((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * radius**2)))


# --- chest X-ray ------------------------------------------------------------------------------

def draw_chest(rng: np.random.Generator, height: int, width: int, finding: str | None) -> np.ndarray:
    """A frontal chest radiograph; finding None, "pneumonia" (diffuse lower-zone opacity) or "tb"
    (apical cavities and nodules). Lungs are dark (air), bone and soft tissue bright."""
    rows, cols = _grid(height, width)
    # Keep anatomy round on non-square images: work in units of the shorter side around the centre.
    aspect = width / height
    if aspect >= 1:
        cols = (cols - 0.5) * aspect + 0.5
    else:
        rows = (rows - 0.5) / aspect + 0.5
    shift_y, shift_x = rng.normal(0, 0.02, 2)
    image = np.full((height, width), 0.06, dtype=np.float32)
    body = _soft_ellipse(rows, cols, (0.55 + shift_y, 0.5 + shift_x), (0.6, 0.44), 6.0)
    image += 0.52 * body
    lung_height, lung_width = 0.3 + rng.normal(0, 0.015), 0.14 + rng.normal(0, 0.01)
    lung_centres = [(0.46 + shift_y, 0.32 + shift_x), (0.46 + shift_y, 0.68 + shift_x)]
    lungs = [_soft_ellipse(rows, cols, c, (lung_height, lung_width), 10.0) for c in lung_centres]
    lung_field = np.clip(lungs[0] + lungs[1], 0, 1)
    image -= 0.36 * lung_field
    # Ribs: curved bright bands inside the lung fields.
    rib_count = rng.uniform(9, 11)
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (rows * rib_count + 2.2 * (cols - 0.5 - shift_x) ** 2))
    image += 0.09 * ribs**3 * lung_field
    # Spine and mediastinum between the lungs, heart over the lower left lung (image right).
    image += 0.22 * _soft_ellipse(rows, cols, (0.55 + shift_y, 0.5 + shift_x), (0.55, 0.055), 8.0)
    heart_centre = (0.62 + shift_y, 0.56 + shift_x + rng.normal(0, 0.01))
    image += 0.26 * _soft_ellipse(rows, cols, heart_centre, (0.13, 0.15 + rng.normal(0, 0.01)), 8.0)
    if finding == "pneumonia":
        side = rng.integers(0, 3)  # left, right or both lungs
        zone = np.clip((rows - (0.42 + shift_y)) / 0.15, 0, 1)  # lower zones
        involved = lungs[0] if side == 0 else lungs[1] if side == 1 else lung_field
        cloud = smooth_noise(rng, height, width, 6) * 0.6 + 0.4
        image += rng.uniform(0.32, 0.45) * cloud * zone * involved
    elif finding == "tb":
        # Post-primary TB: hazy infiltrates in the upper zones (pneumonia above fills the lower ones).
        side = rng.integers(0, 3)
        zone = np.clip(((0.4 + shift_y) - rows) / 0.15, 0, 1)
        involved = lungs[0] if side == 0 else lungs[1] if side == 1 else lung_field
        haze = smooth_noise(rng, height, width, 8) * 0.6 + 0.4
        image += rng.uniform(0.3, 0.42) * haze * zone * involved
        for _ in range(rng.integers(1, 3)):  # cavities: bright wall, dark centre, in an upper zone
            centre_x = lung_centres[rng.integers(0, 2)][1] + rng.normal(0, 0.04)
            centre = (0.3 + shift_y + rng.uniform(-0.04, 0.05), centre_x)
            radius = rng.uniform(0.03, 0.05)
            ring = np.exp(-((np.sqrt((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) - radius) ** 2)
                          / (2 * (radius * 0.35) ** 2))
            image += 0.28 * ring - 0.12 * _blob(rows, cols, centre, radius * 0.5)
        for _ in range(rng.integers(3, 7)):  # nodules clustered at the apices
            centre_x = lung_centres[rng.integers(0, 2)][1] + rng.normal(0, 0.05)
            centre = (0.24 + shift_y + rng.uniform(0.0, 0.14), centre_x)
            image += rng.uniform(0.15, 0.3) * _blob(rows, cols, centre, rng.uniform(0.008, 0.018))
    image += 0.05 * (smooth_noise(rng, height, width, 12) - 0.5)
    image += rng.normal(0, 0.015, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


# --- fundus -----------------------------------------------------------------------------------

# Lesion counts per retinopathy grade 0-4 (ranges): they grow with grade, as the ICDR scale says.
MICROANEURYSMS = ((0, 0), (3, 6), (8, 14), (14, 24), (18, 30))
HAEMORRHAGES = ((0, 0), (0, 0), (2, 4), (5, 9), (7, 12))
EXUDATES = ((0, 0), (0, 1), (3, 8), (6, 12), (6, 12))
COTTON_WOOL = ((0, 0), (0, 0), (0, 1), (2, 4), (2, 4))


def _count(rng: np.random.Generator, table: tuple[tuple[int, int], ...], grade: int) -> int:
    low, high = table[grade]
    return int(rng.integers(low, high + 1))


def _random_spot(rng: np.random.Generator, centre: tuple[float, float], radius: float,
                 avoid: tuple[float, float], avoid_radius: float) -> tuple[float, float]:
    """A point inside the fundus circle, outside the optic disc."""
    while True:
        angle, distance = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0.0, 0.8))
        point = (centre[0] + distance * np.cos(angle), centre[1] + distance * np.sin(angle))
        if np.hypot(point[0] - avoid[0], point[1] - avoid[1]) > avoid_radius:
            return point


def draw_fundus(rng: np.random.Generator, height: int, width: int, grade: int) -> np.ndarray:
    """A colour fundus photograph: orange retina, optic disc with vessels, and lesions by grade."""
    centre = (width / 2 + rng.normal(0, width * 0.01), height / 2 + rng.normal(0, height * 0.01))
    radius = 0.47 * min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot(xs - centre[0], ys - centre[1]) / radius
    retina = 1.0 / (1.0 + np.exp(np.clip((distance - 1.0) * 60, -40, 40)))
    base = np.array([0.78, 0.34, 0.13]) * rng.uniform(0.85, 1.1)
    shading = (1.0 - 0.45 * distance**2)[..., None] * (0.9 + 0.2 * smooth_noise(rng, height, width, 8)[..., None])
    image = base[None, None, :] * shading
    side = 1 if rng.random() < 0.5 else -1  # right or left eye: the disc sits nasally
    disc = (centre[0] + side * 0.32 * radius, centre[1] + rng.normal(0, 0.03) * radius)
    disc_radius = 0.085 * radius
    macula = _blob(ys, xs, (centre[1], centre[0] - side * 0.05 * radius), 0.12 * radius)
    image *= (1.0 - 0.3 * macula)[..., None]
    disc_mask = _blob(ys, xs, (disc[1], disc[0]), disc_radius)
    image = image * (1 - disc_mask[..., None]) + np.array([0.98, 0.88, 0.6]) * disc_mask[..., None]

    # Vessels: arcades leaving the disc above and below the macula, drawn as polylines.
    vessel_layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(vessel_layer)
    line_width = max(1, round(radius / 45))
    for branch in range(int(rng.integers(6, 9))):
        toward_macula = np.pi if side > 0 else 0.0
        angle = toward_macula + (1 if branch % 2 else -1) * rng.uniform(0.3, 1.5)
        bend = (1 if branch % 2 else -1) * rng.uniform(0.01, 0.03)
        point, points = np.array(disc), [tuple(disc)]
        for _ in range(14):
            angle += bend + rng.normal(0, 0.12)
            point = point + radius * 0.07 * np.array([np.cos(angle), np.sin(angle)])
            points.append((float(point[0]), float(point[1])))
        draw.line(points, fill=255, width=line_width + int(rng.integers(0, 2)))
    if grade == 4:  # neovascularisation: fine tangled vessels at the disc
        for _ in range(int(rng.integers(3, 6))):
            start = np.array(disc) + rng.normal(0, disc_radius, 2)
            points = [tuple(start)]
            for _ in range(10):
                start = start + rng.normal(0, radius * 0.03, 2)
                points.append((float(start[0]), float(start[1])))
            draw.line(points, fill=200, width=1)
    vessels = np.asarray(vessel_layer, dtype=np.float32)[..., None] / 255.0
    image = image * (1 - 0.75 * vessels) + np.array([0.45, 0.05, 0.04]) * 0.75 * vessels

    # Lesions: red dots and blots, yellow exudates, pale cotton-wool spots.
    red, yellow, white = (Image.new("L", (width, height), 0) for _ in range(3))
    paint = {"red": ImageDraw.Draw(red), "yellow": ImageDraw.Draw(yellow), "white": ImageDraw.Draw(white)}
    # Sizes (share of the fundus radius) are several times the real ones, so lesions survive the
    # small stand-in images (a fundus radius of ~45 px by default): at real sizes a microaneurysm
    # would be a fraction of a pixel and the grades could not be told apart at all.
    kinds = (
        ("red", MICROANEURYSMS, (0.025, 0.04)),
        ("red", HAEMORRHAGES, (0.07, 0.13)),
        ("yellow", EXUDATES, (0.04, 0.08)),
        ("white", COTTON_WOOL, (0.09, 0.13)),
    )
    for layer, table, (small, large) in kinds:
        for _ in range(_count(rng, table, grade)):
            x, y = _random_spot(rng, centre, radius, disc, disc_radius * 1.5)
            size = max(1.0, radius * rng.uniform(small, large))
            paint[layer].ellipse((x - size, y - size * rng.uniform(0.6, 1.0), x + size, y + size), fill=255)
    for layer, colour in ((red, (0.35, 0.02, 0.02)), (yellow, (0.95, 0.85, 0.3)), (white, (0.92, 0.9, 0.82))):
        mask = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        image = image * (1 - 0.85 * mask) + np.array(colour) * 0.85 * mask
    image = image * retina[..., None] + rng.normal(0, 0.012, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


# --- dermoscopy --------------------------------------------------------------------------------

# Per class: base colour, radius (share of the shorter side), border irregularity, border sharpness.
LESIONS = {
    "MEL": ((0.25, 0.13, 0.08), 0.32, 0.18, 14.0),
    "NV": ((0.48, 0.29, 0.17), 0.24, 0.03, 30.0),
    "BCC": ((0.88, 0.58, 0.58), 0.22, 0.08, 10.0),
    "AKIEC": ((0.78, 0.38, 0.33), 0.26, 0.12, 6.0),
    "BKL": ((0.64, 0.47, 0.31), 0.27, 0.06, 35.0),
    "DF": ((0.5, 0.32, 0.22), 0.16, 0.04, 8.0),
    "VASC": ((0.62, 0.1, 0.26), 0.19, 0.1, 20.0),
}


def draw_skin(rng: np.random.Generator, height: int, width: int, class_name: str) -> np.ndarray:
    """A dermoscopic image: textured skin with one lesion whose shape, colour and border follow the class."""
    colour, radius_share, irregularity, sharpness = LESIONS[class_name]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    side = min(height, width)
    skin = np.array([0.86, 0.66, 0.56]) + rng.normal(0, 0.03, 3)
    texture = smooth_noise(rng, height, width, 16)[..., None]
    image = skin[None, None, :] * (0.92 + 0.12 * texture)
    centre = (width / 2 + rng.normal(0, side * 0.04), height / 2 + rng.normal(0, side * 0.04))
    radius = side * radius_share * rng.uniform(0.85, 1.15)
    angle = np.arctan2(ys - centre[1], xs - centre[0])
    boundary = np.ones_like(angle)
    for harmonic in range(2, 7):  # low harmonics for asymmetry, high ones for a ragged border
        boundary += irregularity * rng.uniform(0.3, 1.0) / harmonic**0.5 * np.cos(
            harmonic * angle + rng.uniform(0, 2 * np.pi))
    relative = np.hypot(xs - centre[0], ys - centre[1]) / (radius * boundary)
    lesion = 1.0 / (1.0 + np.exp(np.clip((relative - 1.0) * sharpness, -40, 40)))
    paint = np.array(colour)[None, None, :] * np.ones_like(image)
    inside = np.clip(1.0 - relative, 0.0, 1.0)[..., None]
    if class_name == "MEL":  # variegated: black core, blue-grey veil, uneven patches
        patches = smooth_noise(rng, height, width, 6)[..., None]
        paint = paint * (0.6 + 0.8 * patches) + np.array([0.3, 0.38, 0.5]) * (patches > 0.7)
    elif class_name == "NV":  # regular pigment network
        network = 0.5 + 0.5 * np.sin(xs * 0.9) * np.sin(ys * 0.9)
        paint = paint * (0.85 + 0.25 * network[..., None])
    elif class_name == "BCC":  # pearly with branching red vessels
        vessels = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(vessels)
        for _ in range(int(rng.integers(3, 6))):
            point = np.array(centre) + rng.normal(0, radius * 0.4, 2)
            points = [tuple(point)]
            for _ in range(6):
                point = point + rng.normal(0, radius * 0.15, 2)
                points.append((float(point[0]), float(point[1])))
            draw.line(points, fill=255, width=1)
        mask = np.asarray(vessels, dtype=np.float32)[..., None] / 255.0
        paint = paint * (1 - mask) + np.array([0.7, 0.1, 0.12]) * mask
    elif class_name == "AKIEC":  # rough, scaly surface
        scales = (rng.random((height, width)) > 0.9)[..., None]
        paint = paint * (0.9 + 0.2 * smooth_noise(rng, height, width, 24)[..., None]) + 0.25 * scales
    elif class_name == "BKL":  # waxy with milia-like white dots
        dots = (rng.random((height, width)) > 0.985)[..., None]
        paint = paint * (0.9 + 0.2 * texture) + 0.35 * dots
    elif class_name == "DF":  # brown ring around a pale central scar
        paint = paint * (1 - 0.9 * inside**2) + np.array([0.93, 0.85, 0.8]) * 0.9 * inside**2
    elif class_name == "VASC":  # red-purple lobules (lacunae) separated by paler septa
        lobules = 0.5 + 0.5 * np.sin(xs * 0.5 + rng.uniform(0, 6)) * np.sin(ys * 0.5 + rng.uniform(0, 6))
        paint = paint * (0.7 + 0.5 * lobules[..., None])
    image = image * (1 - lesion[..., None]) + paint * lesion[..., None]
    # Dermoscope vignette: dark corners outside the lens circle on some images.
    if rng.random() < 0.3:
        lens = np.hypot(xs - width / 2, ys - height / 2) / (0.6 * np.hypot(width, height))
        image *= np.clip(1.4 - lens * 1.2, 0.0, 1.0)[..., None]
    image += rng.normal(0, 0.01, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)
