"""A stage-2 step as the reference implementation does it, timed in images per second.

Every step decodes each image from its full-resolution file (PIL), builds the teacher's clean view
and the student's random-resized crop from the full image with PIL, runs the frozen teacher
forward and the prompted student forward and backward, all in fp32. The colour jitter, grayscale
and blur after the crop reuse medguna's tensor code, so the comparison with medguna's loop isolates
what medguna changes: decode once, teacher features once, bf16 on GPU.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from medguna.data.augment import strong_view
from medguna.data.images import decode_image, normalize, preprocess_image
from medguna.method.losses import stage2_loss
from medguna.method.stage2 import make_stage2_optimizer
from medguna.method.teacher import student_logits, teacher_labels
from medguna.models.adapter import Adapter


def _random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """RandomResizedCrop(size, scale 0.2-1, ratio 3/4-4/3) and a flip, on the full-size PIL image."""
    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(0.2, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
            break
    else:
        left, top, crop_w, crop_h = 0, 0, width, height
    crop = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
    if rng.uniform() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(crop, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def reference_style_images_per_second(
    encoder, paths: list[str], num_classes: int, *, batch_size: int, steps: int, prompt_length: int,
    preprocessing: str = "medclip", insertion: str = "grid", device: torch.device | str = "cpu",
    warmup_steps: int = 1, seed: int = 0,
) -> float:
    """Stage-2 training images per second of the reference-style loop (warm-up steps not timed)."""
    device = torch.device(device)
    color = "L" if preprocessing == "medclip" else "RGB"
    size = encoder.image_size
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher = Adapter(encoder.embed_dim, num_classes).to(device).requires_grad_(False)
    adapter = Adapter(encoder.embed_dim, num_classes).to(device)
    prompts = torch.nn.Parameter(torch.empty(prompt_length, encoder.prompt_dim, device=device).uniform_(-0.0833, 0.0833))
    optimizer = make_stage2_optimizer([prompts, *adapter.parameters()])
    timed_images, timed_seconds = 0, 0.0
    for step in tqdm(range(warmup_steps + steps), desc="reference-style stage 2", unit="step"):
        started = time.perf_counter()
        chosen = rng.choice(len(paths), size=batch_size, replace=len(paths) < batch_size)
        clean, strong = [], []
        for index in chosen:
            image = decode_image(paths[index], color)  # the full-resolution decode, every step
            clean.append(preprocess_image(image, preprocessing, size))
            strong.append(_random_resized_crop(image, size, rng))
        clean_batch = torch.from_numpy(np.stack(clean)).to(device)
        strong_batch = strong_view(torch.from_numpy(np.stack(strong)).to(device), out_size=size,
                                   generator=generator)
        with torch.no_grad():
            teacher_features = encoder.image_features(normalize(clean_batch, preprocessing))
            targets = teacher_labels(teacher, teacher_features, normalize=True)
        features = encoder.image_features(normalize(strong_batch, preprocessing), prompts=prompts,
                                          insertion=insertion)
        logits = student_logits(adapter, features, normalize=True)
        loss, _ = stage2_loss(logits, targets, ce_weight=0.7, entropy_weight=1.5, confident_ratio=0.1,
                              label_smoothing=0.1, safe_entropy=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup_steps:
            timed_images += batch_size
            timed_seconds += time.perf_counter() - started
    return timed_images / timed_seconds
