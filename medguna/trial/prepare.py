"""The work a trial shares with every other trial of its dataset, done once and cached.

Decoded images, text embeddings, frozen clean-view features and (for prompt-free trials) a bank of
features of augmented views depend only on the data, the encoder and the preprocessing, never on
the searched hyperparameters that change between trials. Each is keyed by the hash of what
determines it (see medguna.trial.cache).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medguna.config import TEST_SIZE_CHECKPOINT, TrialConfig
from medguna.data.datasets import DATASETS, DatasetSpec, get_dataset
from medguna.trial.cache import cached_tensors, content_key
from medguna.trial.memory import release_memory

_ENCODERS: dict[tuple, Any] = {}
_ENCODER_LOCK = threading.Lock()


def synthetic_root(cache_dir: str | os.PathLike, dataset: str, scale: float, seed: int = 0,
                   shift: str = "none") -> Path:
    """The synthetic stand-in of `dataset` under acquisition `shift`, written once (atomically)."""
    from medguna.data.rebuilds import note_rebuild
    from medguna.data.shifts import check_shift, shift_slug
    from medguna.data.synthetic import stand_in_problem, synthesize

    shift = check_shift(shift, dataset)
    root = Path(cache_dir).resolve() / "synthetic" / f"{dataset}-scale{scale:g}-seed{seed}{shift_slug(shift)}"
    damaged = ""
    if root.is_dir():
        damaged = stand_in_problem(root, dataset, seed=seed, scale=scale, shift=shift)
        if not damaged:
            return root
        note_rebuild(root.parent, f"synthetic stand-in {root} is {damaged}: writing it again")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        synthesize(dataset, tmp, seed=seed, scale=scale, shift=shift)
        if damaged:  # moved aside, not deleted first: a reader never finds the folder missing for long
            old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.damaged."))
            with contextlib.suppress(OSError):  # another process replaced it first
                root.rename(old / "stand-in")
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(root)
        except OSError:  # another trial finished the same stand-in first: theirs is identical
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def load_trial_manifest(cfg: TrialConfig):
    from medguna.data.manifest import load_manifest

    d = cfg.data
    root = d.root if d.root is not None else synthetic_root(d.cache_dir, d.dataset, d.synthetic_scale,
                                                            seed=d.synthetic_seed, shift=d.synthetic_shift)
    return load_manifest(
        d.dataset, root, Path(d.cache_dir) / "splits",
        val_fraction=d.val_fraction, test_fraction=d.test_fraction, split_seed=d.split_seed,
    )


def vocab_texts() -> list[str]:
    """Texts the test-size model's WordPiece vocabulary is built from: our own descriptions."""
    from medguna.text.sources import flatten_descriptions, load_descriptions

    texts: list[str] = []
    for spec in DATASETS.values():
        for source in ("curated", "templates"):
            texts += flatten_descriptions(load_descriptions(source, spec), spec)[0]
    return texts


def get_encoder(cfg: TrialConfig):
    """The encoder of this configuration, loaded once per worker process and kept frozen."""
    from medguna.models.registry import build_encoder

    m = cfg.model
    key = (m.encoder, m.checkpoint, m.tokenizer, str(Path(cfg.data.cache_dir).resolve()))
    with _ENCODER_LOCK:
        if key not in _ENCODERS:
            # One encoder per worker: a reused worker whose next trial wants another one (another
            # checkpoint) drops the old one and its device memory before loading the new one.
            _ENCODERS.clear()
            release_memory()
            encoder = build_encoder(
                m.encoder, m.checkpoint, m.tokenizer,
                cache_dir=Path(cfg.data.cache_dir) / "models",
                vocab_texts=vocab_texts() if m.builtin == TEST_SIZE_CHECKPOINT else None,
            )
            encoder.eval()
            encoder.requires_grad_(False)
            _ENCODERS[key] = encoder
        return _ENCODERS[key]


@contextmanager
def image_cache_dir(cfg: TrialConfig) -> Iterator[Path]:
    """The persistent image cache, or (caches off) a scratch folder removed after the trial."""
    if cfg.runtime.caches:
        yield Path(cfg.data.cache_dir) / "images"
    else:
        with tempfile.TemporaryDirectory(prefix="medguna-nocache-") as tmp:
            yield Path(tmp)


@dataclass
class SharedWork:
    """Everything a trial reads that is the same for every trial of its dataset and encoder."""

    spec: DatasetSpec
    manifest: Any
    encoder: Any
    images: dict[str, torch.Tensor]  # split -> uint8 (N, C, S, S), memory-mapped
    labels: dict[str, torch.Tensor]
    clean_features: dict[str, torch.Tensor]  # split -> (N, D) frozen encoder features
    text_embeddings: torch.Tensor  # (T, D), L2-normalised
    text_labels: torch.Tensor  # (T,)
    class_prototypes: torch.Tensor  # (K, D), zero-shot prompts' embeddings
    preprocessing: str
    cache_hits: dict[str, bool]  # entry name (text_embeddings, images_<split>, features_<split>) -> hit
    image_keys: dict[str, str]  # split -> content key of its decoded images
    precision: str  # dtype the frozen features were computed in
    descriptions_sha256: str  # the sentences this trial used (as a description set records them)
    # strong_view_source=whole: train/val whole images (N, C, 2S, 2S), their original (height,
    # width) and content keys; empty otherwise (strong views are cropped from `images`).
    whole_images: dict[str, torch.Tensor] = field(default_factory=dict)
    whole_sizes: dict[str, torch.Tensor] = field(default_factory=dict)
    whole_keys: dict[str, str] = field(default_factory=dict)


def _tensor_cache_dir(cfg: TrialConfig) -> Path | None:
    return Path(cfg.data.cache_dir) / "tensors" if cfg.runtime.caches else None


def compute_precision(device, autocast) -> str:
    """The dtype frozen features are computed in under `autocast` ("float32", "bfloat16", ...).

    Part of every feature key: bf16 features from a GPU trial must not be reused by an fp32 trial
    on CPU (or the reverse), or results would depend on which trial filled the cache first.
    """
    device_type = torch.device(device).type
    with autocast():
        if torch.is_autocast_enabled(device_type):
            return str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")
    return "float32"


def encoder_id(encoder) -> str:
    """What identifies an encoder's weights and architecture in cache keys."""
    return str(encoder.info.get("checkpoint_sha256", "")) + ":" + str(encoder.info.get("encoder", ""))


def encode_images(encoder, images: torch.Tensor, preprocessing: str, *, device, batch_size: int,
                  autocast, view=None, generator: torch.Generator | None = None,
                  sizes: torch.Tensor | None = None) -> torch.Tensor:
    """Frozen encoder features of a uint8 image tensor, clean view or `view(batch, generator)`
    (`view(batch, generator, sizes of the batch)` when `sizes` is given)."""
    from medguna.data.augment import clean_view
    from medguna.data.images import normalize

    size = encoder.image_size
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            if view is None:
                pixels = clean_view(batch, out_size=size)
            elif sizes is not None:
                pixels = view(batch, generator, sizes[start:start + batch_size])
            else:
                pixels = view(batch, generator)
            with autocast():
                out.append(encoder.image_features(normalize(pixels, preprocessing)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, encoder.embed_dim)


def _rng_neutral(device):
    """Leave the caller's global RNG state as it was, whatever the shared work computes.

    Building an encoder (random init before loading) draws from the global generator, but only in
    the first trial of a process, and a cache miss may draw where a hit does not. The trial seeds
    once and then initialises its adapter from the global generator, so without this its result
    would depend on whether the encoder or the caches were already warm.
    """
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def stage1_texts(method, spec: DatasetSpec, sets_dir=None) -> tuple[list[str], list[int], dict[str, list[str]]]:
    """Stage 1's texts exactly as they are encoded (sentences in their wrapper), their labels, and
    the descriptions they came from."""
    from medguna.text.sources import flatten_descriptions, load_descriptions
    from medguna.text.wrappers import wrap_texts

    descriptions = load_descriptions(method.description_source, spec, method.class_templates, sets_dir=sets_dir)
    texts, labels = flatten_descriptions(descriptions, spec)
    return wrap_texts(texts, method.resolved_text_wrapper, spec.modality), labels, descriptions


def prepare_shared_work(cfg: TrialConfig, *, device, autocast, image_dir: Path) -> SharedWork:
    """Images, labels, frozen clean-view features and text embeddings of cfg's dataset (cached)."""
    with _rng_neutral(device):
        return _prepare_shared_work(cfg, device=device, autocast=autocast, image_dir=image_dir)


def _prepare_shared_work(cfg: TrialConfig, *, device, autocast, image_dir: Path) -> SharedWork:
    from medguna.data.cache import build_image_cache, cache_file, cache_key
    from medguna.text.sets import descriptions_sha256, sets_dir_for
    from medguna.text.wrappers import class_prompts, descriptions_fingerprint

    spec = get_dataset(cfg.data.dataset)
    method = cfg.method
    preprocessing = method.resolved_preprocessing
    wrapper = method.resolved_text_wrapper
    manifest = load_trial_manifest(cfg)
    encoder = get_encoder(cfg).to(device)
    enc_id = encoder_id(encoder)
    precision = compute_precision(device, autocast)
    tensor_dir = _tensor_cache_dir(cfg)
    hits: dict[str, bool] = {}

    # Texts: keyed by the sentences themselves, never by the source's name (docs/method.md §5.8).
    wrapped, text_labels, descriptions = stage1_texts(method, spec, sets_dir=sets_dir_for(cfg.data.cache_dir))
    prompts = class_prompts(spec, wrapper)
    # The tokenizer's vocabulary decides the token ids, so it is part of the key like the weights.
    text_material = {"encoder": enc_id, "tokenizer": encoder.info.get("tokenizer_sha256", ""),
                     "texts": descriptions_fingerprint(wrapped, text_labels, wrapper), "prompts": prompts,
                     "max_text_tokens": encoder.max_text_tokens}
    text_key = content_key(**text_material)

    def encode_all_texts() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"texts": encoder.encode_texts(wrapped).float(),
                    "prototypes": encoder.encode_texts(prompts).float()}

    text, hits["text_embeddings"] = cached_tensors(tensor_dir, "text", text_key, encode_all_texts,
                                                   material=text_material, names=("texts", "prototypes"))

    images, labels, features, image_keys = {}, {}, {}, {}
    size = cfg.data.image_size
    for split in ("train", "val", "test"):
        paths = manifest.paths(split)
        labels[split] = manifest.labels(split)
        # Keyed by this split's own images (paths, sizes, mtimes, preprocessing, size), not by the
        # whole manifest: a changed test image or a moved val/train boundary must not throw away
        # the features of splits whose images did not change.
        depth = method.high_bit_depth
        image_keys[split] = cache_key(paths, preprocessing, size, depth) if paths else "empty"
        hits[f"images_{split}"] = bool(paths) and cache_file(paths, preprocessing, size, image_dir, depth).is_file()
        images[split] = build_image_cache(paths, preprocessing, size, image_dir, progress=True,
                                          high_bit_depth=depth)
        material = {"encoder": enc_id, "images": image_keys[split], "precision": precision}
        feats, hits[f"features_{split}"] = cached_tensors(
            tensor_dir, "features", content_key(**material),
            lambda split=split: {"features": encode_images(
                encoder, images[split], preprocessing, device=device,
                batch_size=cfg.runtime.eval_batch_size, autocast=autocast)},
            material=material, names=("features",),
        )
        features[split] = feats["features"]

    shared = SharedWork(
        spec=spec, manifest=manifest, encoder=encoder, images=images, labels=labels,
        clean_features=features, text_embeddings=text["texts"],
        text_labels=torch.as_tensor(text_labels, dtype=torch.long),
        class_prototypes=text["prototypes"], preprocessing=preprocessing, cache_hits=hits,
        image_keys=image_keys, precision=precision,
        descriptions_sha256=descriptions_sha256(descriptions),
    )
    if method.resolved_strong_view_source == "whole":
        _add_whole_images(cfg, shared, manifest, image_dir)
    return shared


def _add_whole_images(cfg: TrialConfig, shared: SharedWork, manifest, image_dir: Path) -> None:
    """Whole images of the splits stage 2 trains on, to crop strong views from (docs/method.md §5.4)."""
    from medguna.config import WHOLE_IMAGE_SCALE
    from medguna.data.cache import build_image_cache, cache_file, cache_key, whole_image_sizes

    size, depth, preprocessing = WHOLE_IMAGE_SCALE * cfg.data.image_size, cfg.method.high_bit_depth, shared.preprocessing
    for split in ("train", "val") if cfg.runtime.protocol == "reference" else ("train",):
        paths = manifest.paths(split)
        shared.whole_keys[split] = cache_key(paths, preprocessing, size, depth, whole=True) if paths else "empty"
        shared.cache_hits[f"whole_images_{split}"] = bool(paths) and cache_file(
            paths, preprocessing, size, image_dir, depth, whole=True).is_file()
        shared.whole_images[split] = build_image_cache(paths, preprocessing, size, image_dir, progress=True,
                                                       high_bit_depth=depth, whole=True)
        shared.whole_sizes[split] = (whole_image_sizes(paths, preprocessing, size, image_dir, depth) if paths
                                     else torch.zeros((0, 2), dtype=torch.int64))


def feature_bank(cfg: TrialConfig, shared: SharedWork, *, device, autocast, split: str = "train") -> torch.Tensor:
    """(views, N, D) frozen features of augmented views of `split`, for prompt-free trials.

    With no prompts the student's features are the frozen encoder's features of strong views,
    so they can be encoded once per dataset and encoder and shared by every such trial.
    """
    from medguna.data.augment import strong_view

    r = cfg.runtime
    interpolation = cfg.method.crop_interpolation
    augmentation = cfg.method.strong_view_augmentation
    whole = split in shared.whole_images
    source = shared.whole_images[split] if whole else shared.images[split]
    material = dict(encoder=encoder_id(shared.encoder),
                    images=shared.whole_keys[split] if whole else shared.image_keys[split],
                    precision=shared.precision, views=r.feature_bank_views, seed=r.feature_bank_seed,
                    # bicubic banks of reference views keep their earlier keys, so existing caches stay valid
                    **({"interpolation": interpolation} if interpolation != "bicubic" else {}),
                    **({"augmentation": augmentation} if augmentation != "reference" else {}))

    def compute() -> dict[str, torch.Tensor]:
        generator = torch.Generator(device="cpu").manual_seed(r.feature_bank_seed)
        size = shared.encoder.image_size

        def view(batch, gen, sizes=None):
            return strong_view(batch.cpu(), out_size=size, generator=gen, interpolation=interpolation,
                               sizes=sizes, augmentation=augmentation).to(device)

        bank = [encode_images(shared.encoder, source, shared.preprocessing,
                              device=device, batch_size=r.eval_batch_size, autocast=autocast,
                              view=view, generator=generator,
                              sizes=shared.whole_sizes[split] if whole else None)
                for _ in range(r.feature_bank_views)]
        return {"bank": torch.stack(bank)}

    with _rng_neutral(device):
        bank, shared.cache_hits["feature_bank"] = cached_tensors(
            _tensor_cache_dir(cfg), "bank", content_key(**material), compute, material=material, names=("bank",))
    return bank["bank"]
