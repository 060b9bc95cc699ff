"""Contrastive pretraining of the demonstration encoder on a synthetic source domain.

A test-size MedCLIP-ViT learns, CLIP-style, to match images drawn by medguna's class-dependent
generators (all five datasets, no acquisition shift) with captions taken from the class
descriptions and templates. Like MedCLIP's semantic matching loss, the targets are soft: every
caption of the same concept (modality and class) is a positive, not only the image's own caption.

The result is saved in the released checkpoint layout (plus vocab.txt, medguna's config and a
recipe.json saying how it was made), so the same loader and `check-model` read it as they read the
real release. It is a demonstration: it knows synthetic drawings, not medicine.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from medguna.data.datasets import DATASETS, get_dataset
from medguna.data.images import PREPROCESSINGS, normalize, preprocess_image
from medguna.data.synthetic import render_array
from medguna.errors import ConfigError

# Bump when the same recipe would give different weights.
RECIPE_FORMAT = 1
# Synthetic seeds of the source domain start here; the stand-ins studies adapt to use seeds 0-999,
# so pretraining never sees a target image, shifted or not.
SOURCE_SEED_BASE = 100_000
WRAPPERS = ("modality", "reference", "none")
RECIPE_FILE = "recipe.json"  # beside the weights: how they were made


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the demonstration encoder's weights (with the code version)."""

    images_per_class: int = 48
    steps: int = 600
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 40
    crop_scale_min: float = 0.6
    seed: int = 0

    def validate(self) -> PretrainRecipe:
        for name in ("images_per_class", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"pretraining {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        return self


@dataclass
class SourceDomain:
    """Pre-rendered source images (both preprocessings) and captions, indexed by concept."""

    images: dict[str, torch.Tensor]  # preprocessing -> (N, C, 224, 224) uint8
    image_concepts: torch.Tensor  # (N,) concept index of each image
    concepts: list[tuple[str, str]]  # (modality, class name)
    captions: list[list[str]]  # per concept: its wrapped captions


def concept_captions(dataset: str, class_index: int) -> list[str]:
    """Every caption of one class: curated sentences, templates and the name, in each wrapper."""
    from medguna.text.sources import load_descriptions, readable_class_name
    from medguna.text.wrappers import wrap_texts

    spec = get_dataset(dataset)
    name = spec.classes[class_index]
    texts: list[str] = [readable_class_name(name)]
    for source in ("curated", "templates"):
        texts += load_descriptions(source, spec)[name]
    captions: list[str] = []
    for wrapper in WRAPPERS:
        captions += wrap_texts(texts, wrapper, spec.modality)
    return list(dict.fromkeys(captions))


def render_source_domain(recipe: PretrainRecipe, image_size: int = 224, progress: bool = True) -> SourceDomain:
    """Draw `images_per_class` unshifted images per class of every dataset, preprocessed both ways."""
    concepts: list[tuple[str, str]] = []
    captions: list[list[str]] = []
    rendered: dict[str, list[np.ndarray]] = {p: [] for p in PREPROCESSINGS}
    image_concepts: list[int] = []
    total = sum(len(spec.classes) for spec in DATASETS.values()) * recipe.images_per_class
    bar = tqdm(total=total, desc="drawing the source domain", unit="img", disable=not progress)
    for dataset_index, (name, spec) in enumerate(DATASETS.items()):
        for class_index, class_name in enumerate(spec.classes):
            concept = (spec.modality, class_name)
            if concept not in concepts:  # NORMAL of Shenzhen and of Montgomery is one concept
                concepts.append(concept)
                captions.append([])
            concept_id = concepts.index(concept)
            captions[concept_id] = list(dict.fromkeys(captions[concept_id] + concept_captions(name, class_index)))
            for number in range(recipe.images_per_class):
                rng = np.random.default_rng([SOURCE_SEED_BASE + recipe.seed, dataset_index, class_index, number])
                array = render_array(name, class_index, rng, None)
                pil = Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8))
                for preprocessing in PREPROCESSINGS:
                    rendered[preprocessing].append(preprocess_image(pil, preprocessing, image_size))
                image_concepts.append(concept_id)
                bar.update(1)
    bar.close()
    return SourceDomain(
        images={p: torch.from_numpy(np.stack(arrays)) for p, arrays in rendered.items()},
        image_concepts=torch.tensor(image_concepts), concepts=concepts, captions=captions,
    )


def soft_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, concepts: torch.Tensor,
                   logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP cross-entropy with every same-concept pair as a (shared) positive."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * image_features @ text_features.T
    same = (concepts[:, None] == concepts[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_image = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def _lr_at(step: int, recipe: PretrainRecipe) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(model, tokenizer, domain: SourceDomain, recipe: PretrainRecipe, *,
             progress: bool = True, on_step=None) -> list[float]:
    """Train `model` (a MedClipModel) in place; return the loss of every step.

    `on_step(step, model)`, if given, is called after every step (e.g. to save snapshots).
    """
    from medguna.data.augment import crop_flip_view
    from medguna.models.tokenizer import MODEL_MAX_LENGTH

    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n_concepts = len(domain.concepts)
    by_concept = [torch.nonzero(domain.image_concepts == c).flatten() for c in range(n_concepts)]
    size = int(model.config.vision["image_size"])
    losses: list[float] = []
    bar = tqdm(range(recipe.steps), desc="pretraining the demonstration encoder", unit="step",
               disable=not progress)
    for step in bar:
        # Balanced over concepts, so rare classes (DF, VASC) are learnt as well as common ones.
        concepts = torch.randint(0, n_concepts, (recipe.batch_size,), generator=generator)
        picks = torch.stack([by_concept[c][torch.randint(0, len(by_concept[c]), (1,), generator=generator)]
                             for c in concepts.tolist()]).flatten()
        # Both preprocessings in every batch, so the variants that use either get a trained encoder.
        half = recipe.batch_size // 2
        pixels = []
        for preprocessing, index in (("medclip", picks[:half]), ("clip", picks[half:])):
            views = crop_flip_view(domain.images[preprocessing][index], out_size=size, generator=generator,
                                   scale=(recipe.crop_scale_min, 1.0))
            pixels.append(normalize(views, preprocessing))
        texts = []
        for c in concepts.tolist():
            options = domain.captions[c]
            texts.append(options[int(torch.randint(0, len(options), (1,), generator=generator))])
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=MODEL_MAX_LENGTH,
                           return_tensors="pt")
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, recipe)
        image_features = model.vision_model(torch.cat(pixels))
        text_features = model.text_model(tokens["input_ids"], tokens["attention_mask"])
        loss = soft_clip_loss(image_features, text_features, concepts, model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(step + 1, model)
    model.eval()
    return losses


def build_demo_encoder(out_dir: str | Path, recipe: PretrainRecipe | None = None, *,
                       progress: bool = True) -> Path:
    """Pretrain the demonstration encoder from scratch and save it in the released layout."""
    import medguna
    from medguna.models.checkpoint import save_released_format
    from medguna.models.medclip import build_medclip
    from medguna.models.medclip_config import demo_config
    from medguna.models.tokenizer import build_wordpiece_vocab, load_tokenizer, write_vocab
    from medguna.trial.prepare import vocab_texts

    recipe = (recipe or PretrainRecipe()).validate()
    started = time.perf_counter()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config()
    domain = render_source_domain(recipe, int(config.vision["image_size"]), progress=progress)
    texts = vocab_texts() + [caption for captions in domain.captions for caption in captions]
    write_vocab(build_wordpiece_vocab(texts, config.text["vocab_size"]), out)
    tokenizer = load_tokenizer(out)
    model = build_medclip(config, seed=recipe.seed)
    torch_threads = torch.get_num_threads()
    losses = pretrain(model, tokenizer, domain, recipe, progress=progress)
    save_released_format(model, out, safetensors=True)
    recipe_record = {
        "what": "medguna demonstration encoder: a test-size MedCLIP-ViT pretrained contrastively on "
                "synthetic drawings (not medical data); never report its results as MedCLIP's",
        "format": RECIPE_FORMAT,
        "recipe": asdict(recipe),
        "source_domain": {
            "datasets": list(DATASETS), "images": int(domain.image_concepts.numel()),
            "concepts": [f"{m}:{c}" for m, c in domain.concepts], "shift": "none",
            "synthetic_seed_base": SOURCE_SEED_BASE + recipe.seed,
            "captions": "curated descriptions + templates + class names, in wrappers " + ", ".join(WRAPPERS),
        },
        "loss_first_last": [losses[0], float(np.mean(losses[-20:]))],
        "seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch_threads,
        "code_version": medguna.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rebuild": "medguna pretrain-demo --out DIR (with this recipe: the defaults)",
    }
    (out / RECIPE_FILE).write_text(json.dumps(recipe_record, indent=2) + "\n")
    return out

