"""Building the demonstration encoder: phases 1-3 of medguna.pretraining.demo_encoder (or phase 3
alone on an earlier build's image tower), saved in the released checkpoint layout with the recipe
that made it."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from medguna.data.datasets import DATASETS
from medguna.errors import ConfigError
from medguna.pretraining.demo_encoder import (
    IMAGE_TOWER_FORMATS,
    RECIPE_FILE,
    RECIPE_FORMAT,
    SOURCE_SEED_BASE,
    WRAPPERS,
    PretrainRecipe,
    pretrain,
    render_source_domain,
    source_concepts,
    vocabulary_captions,
)

# Recipe fields phase 3 alone may change when it reuses an image tower.
TEXT_PHASE_FIELDS = ("text_steps", "text_lr")


def load_image_tower(folder: str | Path, recipe: PretrainRecipe) -> tuple[dict[str, torch.Tensor], dict]:
    """The image tower of a demonstration build in `folder`, and its recipe record, after checking
    that phases 1-2 of `recipe` would have made it (same format family, same recipe but phase 3's)."""
    from medguna.models.registry import build_encoder

    folder = Path(folder).expanduser()
    record_path = folder / RECIPE_FILE
    if not record_path.is_file():
        raise ConfigError(f"--image-tower-from {folder}: no {RECIPE_FILE} there; it must be a folder "
                          "that `medguna pretrain-demo` wrote (or the shipped demonstration encoder)")
    record = json.loads(record_path.read_text())
    if record.get("format") not in IMAGE_TOWER_FORMATS:
        raise ConfigError(f"--image-tower-from {folder}: recipe format {record.get('format')} trained its "
                          f"image tower differently from this code (formats {IMAGE_TOWER_FORMATS}); "
                          "run a full build instead")
    wanted = {k: v for k, v in asdict(recipe).items() if k not in TEXT_PHASE_FIELDS}
    theirs = {k: record.get("recipe", {}).get(k) for k in wanted}
    differ = {k: (theirs[k], wanted[k]) for k in wanted if theirs[k] != wanted[k]}
    if differ:
        listed = ", ".join(f"{k} {a} there vs {b} here" for k, (a, b) in differ.items())
        raise ConfigError(f"--image-tower-from {folder}: its image tower was built with another recipe "
                          f"({listed}); pass the same values or run a full build")
    tower = build_encoder("medclip-vit", str(folder)).model.vision_model.state_dict()
    return {k: v.detach().clone() for k, v in tower.items()}, record


def build_demo_encoder(out_dir: str | Path, recipe: PretrainRecipe | None = None, *,
                       progress: bool = True, image_tower_from: str | Path | None = None) -> Path:
    """Pretrain the demonstration encoder and save it in the released layout: from scratch, or
    phase 3 only on the image tower of an earlier build of the same recipe (`image_tower_from`)."""
    import medguna
    from medguna.models.checkpoint import save_released_format
    from medguna.models.medclip import build_medclip
    from medguna.models.medclip_config import demo_config
    from medguna.models.tokenizer import build_wordpiece_vocab, load_tokenizer, write_vocab
    from medguna.text.sources import vocab_texts

    recipe = (recipe or PretrainRecipe()).validate()
    tower, tower_record = (None, None) if image_tower_from is None else load_image_tower(image_tower_from, recipe)
    started = time.perf_counter()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config()
    domain = render_source_domain(recipe, int(config.vision["image_size"]), progress=progress)
    # The vocabulary covers every text a trial may encode, whichever of them are captions.
    _, all_texts = source_concepts(vocabulary_captions)
    texts = vocab_texts() + [text for per_concept in all_texts for text in per_concept]
    write_vocab(build_wordpiece_vocab(texts, config.text["vocab_size"]), out)
    tokenizer = load_tokenizer(out)
    model = build_medclip(config, seed=recipe.seed)
    torch_threads = torch.get_num_threads()
    losses = pretrain(model, tokenizer, domain, recipe, progress=progress, image_tower=tower)
    save_released_format(model, out, safetensors=True)
    loss_record = {phase: [values[0], float(np.mean(values[-20:]))] for phase, values in losses.items()}
    seconds = round(time.perf_counter() - started, 1)
    recipe_record = {
        "what": "medguna demonstration encoder: a test-size MedCLIP-ViT pretrained contrastively on "
                "synthetic drawings (not medical data); never report its results as MedCLIP's",
        "format": RECIPE_FORMAT,
        "recipe": asdict(recipe),
        "source_domain": {
            "datasets": list(DATASETS), "images": int(domain.image_concepts.numel()),
            "concepts": [f"{m}:{c}" for m, c in domain.concepts], "shift": "none",
            "synthetic_seed_base": SOURCE_SEED_BASE + recipe.seed,
            "captions": "curated descriptions + class names (no prompt templates), in wrappers "
                        + ", ".join(WRAPPERS),
        },
        "loss_first_last": loss_record,
        "seconds": seconds,
        "torch_threads": torch_threads,
        "code_version": medguna.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rebuild": "medguna pretrain-demo --out DIR (with this recipe: the defaults)",
    }
    if tower_record is not None:
        weights = Path(image_tower_from).expanduser() / "model.safetensors"
        recipe_record["image_tower_from"] = {
            "format": tower_record["format"], "seconds": tower_record.get("seconds"),
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None,
            "note": "phases 1-2 reused from that build (same recipe); only phase 3 ran here, which gives "
                    "the weights a full build gives",
        }
        recipe_record["loss_first_last"] = {**{k: v for k, v in tower_record.get("loss_first_last", {}).items()
                                               if k != "text"}, **loss_record}
        recipe_record["seconds"] = round(seconds + float(tower_record.get("seconds") or 0.0), 1)
        recipe_record["seconds_phase3_only"] = seconds
    (out / RECIPE_FILE).write_text(json.dumps(recipe_record, indent=2) + "\n")
    return out
