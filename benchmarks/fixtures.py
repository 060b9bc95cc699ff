"""What the benchmarks run on: stand-in images at real resolution and a full-size random MedCLIP.

Nothing is downloaded. The images are medguna's synthetic stand-ins upscaled to the size of the
real scans (a ~3000 px Shenzhen PNG, a ~3000 x 2000 IDRiD JPEG), so decoding costs what it costs
on the real datasets; the checkpoint is MedCLIP-ViT at its released size with random weights,
saved in the released layout, with a WordPiece vocab.txt built from medguna's own descriptions.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from medguna.data.synthetic import synthesize
from medguna.models import (
    build_medclip,
    build_wordpiece_vocab,
    full_size_config,
    save_released_format,
)
from medguna.models.medclip_config import CONFIG_FILE_NAME
from medguna.models.tokenizer import write_vocab
from medguna.text.sources import vocab_texts

# Longer side of the stand-ins, close to the real scans (Shenzhen ~3000 px, IDRiD 4288 px).
REAL_SIDE = 3000
# Each dataset's images in its official layout (they sit in sub-folders; Montgomery's masks are not images).
STAND_IN_FILES = {"shenzhen": "**/*.png", "idrid": "**/*.jpg", "montgomery": "**/CXR_png/*.png",
                  "guangzhou": "**/*.jpeg"}


def real_resolution_stand_in(dataset: str, out_dir: Path, *, scale: float, side: int = REAL_SIDE) -> Path:
    """A synthetic `dataset` in its official layout, every image upscaled to `side` px (longer side)."""
    marker = out_dir / "MEDGUNA_BENCHMARK.json"
    settings = {"dataset": dataset, "scale": scale, "side": side}
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return out_dir
    root = synthesize(dataset, out_dir, seed=0, scale=scale, image_size=1024)
    paths = sorted(root.glob(STAND_IN_FILES[dataset]))

    def upscale(path: Path) -> None:
        with Image.open(path) as opened:
            width, height = opened.size
            factor = side / max(width, height)
            large = opened.resize((round(width * factor), round(height * factor)), Image.Resampling.BICUBIC)
        if path.suffix == ".png":
            large.save(path, optimize=False, compress_level=6)
        else:
            large.save(path, quality=95)

    # PIL releases the GIL while resizing and encoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [pool.submit(upscale, path) for path in paths]
        for future in tqdm(as_completed(futures), total=len(futures),
                           desc=f"writing {side}px {dataset} stand-ins", unit="img"):
            future.result()
    marker.write_text(json.dumps(settings))
    return root


def full_size_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    """A random full-size MedCLIP-ViT in the released layout (pytorch_model.bin only) + vocab.txt."""
    if (out_dir / "pytorch_model.bin").is_file() and (out_dir / "vocab.txt").is_file():
        return out_dir
    config = full_size_config()
    save_released_format(build_medclip(config, seed=seed), out_dir)
    # The release has no medguna config file: without it the loader reads the folder as the release.
    (out_dir / CONFIG_FILE_NAME).unlink(missing_ok=True)
    write_vocab(build_wordpiece_vocab(vocab_texts(), config.text["vocab_size"]), out_dir)
    return out_dir
