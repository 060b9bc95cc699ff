"""Pretraining of the demonstration encoder on a synthetic source domain.

A test-size MedCLIP-ViT learns to match images drawn by medguna's class-dependent generators (all
five datasets, no acquisition shift) with captions in report language: the curated class descriptions
and the class name. Three phases, all on that source domain only:

1. **Image tower, stages 2-4.** MedCLIP's semantic matching with one learnable caption embedding per
   concept (modality and class): a CLIP loss whose text side is a concept prototype. A Swin trained
   from scratch learns slowly on 2 CPU cores, so the patch embedding and first stage keep their
   seeded random weights and their outputs for a few augmented views of every image are computed
   once; stages 2-4 and the projection train on those (about 2x cheaper per step, many more steps).
2. **Whole image tower.** The same loss against phase 1's prototypes, now through every stage on
   fresh views. A random first stage attends almost uniformly, so visual prompt tokens (which
   enter there) swamp the image: 16 freshly drawn prompts left an image's feature at a mean
   cosine of 0.35 (chest), 0.19 (fundus) and 0.87 (skin) to its unprompted one; after this phase
   0.81, 0.75 and 0.93 (measured over 6 prompt draws, some draws still far lower), so MedUnA's
   stage 2 mostly has something to tune rather than repair.
3. **Text tower (LiT).** The image tower is locked and the text tower learns, with the symmetric
   CLIP loss on image-caption pairs (every same-concept caption a positive, as in MedCLIP), to
   put each caption where its concept's images are. The captions are report language, as
   MedCLIP's were: a class's curated sentences of findings, and its name once per wrapper (about 3
   of 100 captions, as a report names a diagnosis now and then). CLIP's prompt templates ("a dark
   photo of the {}.") are not captions: with them a fifth of every class's captions were its name
   in a template, the name was grounded as firmly as the findings, and MedUnA's description-trained
   teacher could not differ from the class-name zero-shot (they agreed on every chest stand-in
   training image). Phase 3 alone can be rerun on an existing image tower (`--image-tower-from`),
   giving the weights a full build would.

The result is saved in the released checkpoint layout (plus vocab.txt, medguna's config and a
recipe.json saying how it was made), so the same loader and `check-model` read it as they read the
real release. It is a demonstration: it knows synthetic drawings, not medicine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
RECIPE_FORMAT = 4
# Formats whose phases 1-2 (the image tower) are this code's: a tower from them can be reused.
IMAGE_TOWER_FORMATS = (3, 4)
# Synthetic seeds of the source domain start here; the stand-ins studies adapt to use seeds 0-999,
# so pretraining never sees a target image, shifted or not.
SOURCE_SEED_BASE = 100_000
WRAPPERS = ("modality", "reference", "none")
RECIPE_FILE = "recipe.json"  # beside the weights: how they were made


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the demonstration encoder's weights (with the code version)."""

    images_per_class: int = 128
    views_per_image: int = 4  # augmented views per image whose first-stage features are cached
    image_steps: int = 3000
    tower_steps: int = 1000  # phase 2: every stage of the image tower
    text_steps: int = 400
    batch_size: int = 32
    image_lr: float = 2e-3
    tower_lr: float = 5e-4
    text_lr: float = 1e-3
    prototype_scale: float = 20.0  # fixed inverse temperature of phase 1's cosine logits
    weight_decay: float = 0.05
    warmup_steps: int = 50
    crop_scale_min: float = 0.6
    seed: int = 0

    def validate(self) -> PretrainRecipe:
        for name in ("images_per_class", "views_per_image", "image_steps", "tower_steps", "text_steps",
                     "batch_size"):
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
    """The pretraining captions of one class: its curated sentences and its name, in each wrapper
    (report language; no prompt templates, see the module docstring)."""
    return _wrapped(dataset, class_index, ("curated",))


def vocabulary_captions(dataset: str, class_index: int) -> list[str]:
    """Every text of one class a trial may encode (names, curated sentences, templates), wrapped:
    the vocabulary is built from these, so it does not change with the choice of captions."""
    return _wrapped(dataset, class_index, ("curated", "templates"))


def _wrapped(dataset: str, class_index: int, sources: tuple[str, ...]) -> list[str]:
    from medguna.text.sources import load_descriptions, readable_class_name
    from medguna.text.wrappers import wrap_texts

    spec = get_dataset(dataset)
    name = spec.classes[class_index]
    texts: list[str] = [readable_class_name(name)]
    for source in sources:
        texts += load_descriptions(source, spec)[name]
    captions: list[str] = []
    for wrapper in WRAPPERS:
        captions += wrap_texts(texts, wrapper, spec.modality)
    return list(dict.fromkeys(captions))


def source_concepts(caption_fn=concept_captions) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The source domain's concepts (modality, class) and each one's captions from `caption_fn`.
    NORMAL of Shenzhen and of Montgomery is one concept, with the captions of both."""
    concepts: list[tuple[str, str]] = []
    captions: list[list[str]] = []
    for name, spec in DATASETS.items():
        for class_index, class_name in enumerate(spec.classes):
            concept = (spec.modality, class_name)
            if concept not in concepts:
                concepts.append(concept)
                captions.append([])
            concept_id = concepts.index(concept)
            captions[concept_id] = list(dict.fromkeys(captions[concept_id] + caption_fn(name, class_index)))
    return concepts, captions


def render_source_domain(recipe: PretrainRecipe, image_size: int = 224, progress: bool = True) -> SourceDomain:
    """Draw `images_per_class` unshifted images per class of every dataset, preprocessed both ways."""
    concepts, captions = source_concepts()
    rendered: dict[str, list[np.ndarray]] = {p: [] for p in PREPROCESSINGS}
    image_concepts: list[int] = []
    total = sum(len(spec.classes) for spec in DATASETS.values()) * recipe.images_per_class
    bar = tqdm(total=total, desc="drawing the source domain", unit="img", disable=not progress)
    for dataset_index, (name, spec) in enumerate(DATASETS.items()):
        for class_index, class_name in enumerate(spec.classes):
            concept_id = concepts.index((spec.modality, class_name))
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


def _lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def _first_stage_grid(model) -> tuple[int, int]:
    """Token grid after the first stage's patch merging (28 x 28 for 224 px and 4 px patches)."""
    side = int(model.config.vision["image_size"]) // int(model.config.vision["patch_size"]) // 2
    return side, side


@torch.no_grad()
def first_stage_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """Patch embedding and stage 1 of the (frozen) Swin: (B, 3, S, S) -> (B, tokens, 2 * embed_dim)."""
    swin = model.vision_model.model
    hidden, dims = swin.embeddings(pixels)
    return swin.encoder.layers[0](hidden, dims)[0]


def later_stages(model, hidden: torch.Tensor) -> torch.Tensor:
    """Stages 2-4, final norm, pooling and projection: the rest of MedClipVisionModel.forward."""
    swin = model.vision_model.model
    dims = _first_stage_grid(model)
    for stage in swin.encoder.layers[1:]:
        hidden = stage(hidden, dims)[0]
        if stage.downsample is not None:
            dims = (dims[0] // 2, dims[1] // 2)
    pooled = swin.pooler(swin.layernorm(hidden).transpose(1, 2)).flatten(1)
    return model.vision_model.projection_head(pooled)


@dataclass
class CachedViews:
    """First-stage features of augmented views of every source image, with each view's concept."""

    features: torch.Tensor  # (N * V, tokens, width) float16
    concepts: torch.Tensor  # (N * V,)


def augmented_views(domain: SourceDomain, recipe: PretrainRecipe, size: int, seed: int, desc: str,
                    progress: bool = True):
    """`views_per_image` crop/flip views of every image, alternating MedCLIP and CLIP preprocessing
    (so variants using either get a trained encoder): yields normalised pixel chunks and concepts."""
    from medguna.data.augment import crop_flip_view

    generator = torch.Generator().manual_seed(seed)
    count = int(domain.image_concepts.numel())
    bar = tqdm(total=count * recipe.views_per_image, desc=desc, unit="view", disable=not progress)
    for view in range(recipe.views_per_image):
        preprocessing = ("medclip", "clip")[view % 2]
        for start in range(0, count, 64):
            images = domain.images[preprocessing][start:start + 64]
            yield (normalize(crop_flip_view(images, out_size=size, generator=generator,
                                            scale=(recipe.crop_scale_min, 1.0)), preprocessing),
                   domain.image_concepts[start:start + 64])
            bar.update(len(images))
    bar.close()


@torch.no_grad()
def cache_views(model, domain: SourceDomain, recipe: PretrainRecipe, progress: bool = True) -> CachedViews:
    """Augmented views of every source image through the frozen first stage (phase 1's inputs)."""
    model.eval()
    chunks, concepts = [], []
    for pixels, chunk_concepts in augmented_views(domain, recipe, int(model.config.vision["image_size"]),
                                                  recipe.seed + 1, "caching first-stage views", progress):
        chunks.append(first_stage_features(model, pixels).half())
        concepts.append(chunk_concepts)
    return CachedViews(torch.cat(chunks), torch.cat(concepts))


class BalancedSampler:
    """Draws view indices: modality uniform, then concept uniform within it, then a random view.

    Balancing by modality first keeps chest X-rays (3 concepts) from being drowned by the 7 skin
    lesion classes; balancing by concept keeps rare classes (DF, VASC) learnt. The pools are built
    once per phase, not per step."""

    def __init__(self, view_concepts: torch.Tensor, modality_of: list[str]) -> None:
        self.pools = [torch.nonzero(view_concepts == c).flatten() for c in range(len(modality_of))]
        self.concepts_by_modality = [[c for c, m in enumerate(modality_of) if m == modality]
                                     for modality in sorted(set(modality_of))]

    def __call__(self, size: int, generator: torch.Generator) -> torch.Tensor:
        picks = []
        for m in torch.randint(0, len(self.concepts_by_modality), (size,), generator=generator).tolist():
            options = self.concepts_by_modality[m]
            concept = options[int(torch.randint(0, len(options), (1,), generator=generator))]
            pool = self.pools[concept]
            picks.append(pool[int(torch.randint(0, len(pool), (1,), generator=generator))])
        return torch.stack(picks)


def _optimise(optimizer, loss: torch.Tensor, params: list, losses: list[float], bar) -> None:
    """One clipped optimiser step; keeps the loss and shows the mean of the last ten."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    losses.append(float(loss.detach()))
    if len(losses) % 10 == 1:
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")


def _scheduled_steps(optimizer, steps: int, peak_lr: float, warmup: int, desc: str, progress: bool):
    """One phase's steps behind a progress bar, each with the optimiser's lr set from the schedule."""
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, steps, peak_lr, warmup)
        yield step, bar


def prototype_loss(features: torch.Tensor, prototypes: torch.Tensor, concepts: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """Cross-entropy of each image over its cosine to every concept prototype (phases 1 and 2)."""
    logits = scale * F.normalize(features, dim=-1) @ F.normalize(prototypes, dim=-1).T
    return F.cross_entropy(logits, concepts)


def train_image_tower(model, views: CachedViews, domain: SourceDomain, recipe: PretrainRecipe, *,
                      progress: bool = True, on_step=None) -> tuple[list[float], torch.Tensor]:
    """Phase 1: stages 2-4 and the projection against one learnable caption embedding per concept.

    Returns the losses and the learnt concept prototypes (phase 2 goes on against them)."""
    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    swin = model.vision_model.model
    trained = [p for stage in swin.encoder.layers[1:] for p in stage.parameters()]
    trained += list(swin.layernorm.parameters()) + list(model.vision_model.projection_head.parameters())
    prototypes = torch.nn.Parameter(torch.randn(len(domain.concepts), model.config.projection_dim,
                                                generator=generator) * 0.02)
    optimizer = torch.optim.AdamW(trained + [prototypes], lr=recipe.image_lr, weight_decay=recipe.weight_decay)
    sample = BalancedSampler(views.concepts, [m for m, _ in domain.concepts])
    model.train()
    losses: list[float] = []
    for step, bar in _scheduled_steps(optimizer, recipe.image_steps, recipe.image_lr, recipe.warmup_steps,
                                      "pretraining: image tower", progress):
        index = sample(recipe.batch_size, generator)
        loss = prototype_loss(later_stages(model, views.features[index].float()), prototypes,
                              views.concepts[index], recipe.prototype_scale)
        _optimise(optimizer, loss, trained + [prototypes], losses, bar)
        if on_step is not None:
            on_step("image", step + 1, model)
    model.eval()
    return losses, prototypes.detach()


def train_whole_image_tower(model, domain: SourceDomain, prototypes: torch.Tensor, recipe: PretrainRecipe, *,
                            progress: bool = True, on_step=None) -> list[float]:
    """Phase 2: every stage of the image tower, from the patch embedding on, on fresh crop/flip views
    (MedCLIP and CLIP preprocessing on alternate steps), against phase 1's prototypes (still learnt)."""
    from medguna.data.augment import crop_flip_view

    generator = torch.Generator().manual_seed(recipe.seed + 3)
    size = int(model.config.vision["image_size"])
    trained = list(model.vision_model.parameters())
    prototypes = torch.nn.Parameter(prototypes.clone())
    optimizer = torch.optim.AdamW(trained + [prototypes], lr=recipe.tower_lr, weight_decay=recipe.weight_decay)
    sample = BalancedSampler(domain.image_concepts, [m for m, _ in domain.concepts])
    model.vision_model.train()
    losses: list[float] = []
    for step, bar in _scheduled_steps(optimizer, recipe.tower_steps, recipe.tower_lr, recipe.warmup_steps,
                                      "pretraining: whole image tower", progress):
        index = sample(recipe.batch_size, generator)
        preprocessing = ("medclip", "clip")[step % 2]
        pixels = normalize(crop_flip_view(domain.images[preprocessing][index], out_size=size, generator=generator,
                                          scale=(recipe.crop_scale_min, 1.0)), preprocessing)
        loss = prototype_loss(model.vision_model(pixels), prototypes, domain.image_concepts[index],
                              recipe.prototype_scale)
        _optimise(optimizer, loss, trained + [prototypes], losses, bar)
        if on_step is not None:
            on_step("tower", step + 1, model)
    model.eval()
    return losses


@torch.no_grad()
def view_embeddings(model, domain: SourceDomain, recipe: PretrainRecipe,
                    progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The locked image tower's normalised embedding of augmented views of every source image."""
    model.eval()
    embeddings, concepts = [], []
    for pixels, chunk_concepts in augmented_views(domain, recipe, int(model.config.vision["image_size"]),
                                                  recipe.seed + 4, "embedding views for the text tower",
                                                  progress):
        embeddings.append(F.normalize(model.vision_model(pixels), dim=-1))
        concepts.append(chunk_concepts)
    return torch.cat(embeddings), torch.cat(concepts)


def train_text_tower(model, tokenizer, domain: SourceDomain, recipe: PretrainRecipe,
                     *, progress: bool = True, on_step=None) -> list[float]:
    """Phase 3 (LiT): image tower locked; the text tower learns with the symmetric soft CLIP loss."""
    from medguna.models.tokenizer import MODEL_MAX_LENGTH

    generator = torch.Generator().manual_seed(recipe.seed + 2)
    # Dropout draws from the global generator: seeded here, phase 3 alone (on a saved image tower)
    # repeats what it does after phases 1-2 in a full build.
    torch.manual_seed(recipe.seed + 2)
    image_embeddings, view_concepts = view_embeddings(model, domain, recipe, progress)
    trained = list(model.text_model.parameters()) + [model.logit_scale]
    optimizer = torch.optim.AdamW(trained, lr=recipe.text_lr, weight_decay=recipe.weight_decay)
    sample = BalancedSampler(view_concepts, [m for m, _ in domain.concepts])
    model.text_model.train()
    losses: list[float] = []
    for step, bar in _scheduled_steps(optimizer, recipe.text_steps, recipe.text_lr, recipe.warmup_steps,
                                      "pretraining: text tower (image tower locked)", progress):
        index = sample(recipe.batch_size, generator)
        concepts = view_concepts[index]
        texts = []
        for c in concepts.tolist():
            options = domain.captions[c]
            texts.append(options[int(torch.randint(0, len(options), (1,), generator=generator))])
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=MODEL_MAX_LENGTH, return_tensors="pt")
        text_features = model.text_model(tokens["input_ids"], tokens["attention_mask"])
        loss = soft_clip_loss(image_embeddings[index], text_features, concepts, model.logit_scale)
        _optimise(optimizer, loss, trained, losses, bar)
        if on_step is not None:
            on_step("text", step + 1, model)
    model.eval()
    return losses


def pretrain(model, tokenizer, domain: SourceDomain, recipe: PretrainRecipe, *,
             progress: bool = True, on_step=None, image_tower: dict[str, torch.Tensor] | None = None,
             ) -> dict[str, list[float]]:
    """The three phases, in place on `model` (a MedClipModel); the losses of every step of each.

    With `image_tower` (a vision_model state dict that phases 1-2 of this recipe produced), only
    phase 3 runs, on that tower. `on_step(phase, step, model)`, if given, is called after every step.
    """
    losses: dict[str, list[float]] = {}
    if image_tower is None:
        torch.manual_seed(recipe.seed)
        views = cache_views(model, domain, recipe, progress=progress)
        losses["image"], prototypes = train_image_tower(model, views, domain, recipe, progress=progress,
                                                        on_step=on_step)
        losses["tower"] = train_whole_image_tower(model, domain, prototypes, recipe, progress=progress,
                                                  on_step=on_step)
        del views  # phase 2 changed the first stage, so phase 3 embeds fresh views through all of it
    else:
        model.vision_model.load_state_dict(image_tower)
    losses["text"] = train_text_tower(model, tokenizer, domain, recipe, progress=progress, on_step=on_step)
    return losses
