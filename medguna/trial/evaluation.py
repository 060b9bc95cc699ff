"""Scoring the student on a split: its softmax outputs and the metrics a result row carries."""

from __future__ import annotations

from typing import Any

import torch

from medguna.trial.prepare import SharedWork


def evaluate(student, shared: SharedWork, split: str, *, device, autocast, batch_size: int):
    """Softmax outputs of the student on the clean view of `split`."""
    from medguna.data.augment import clean_view
    from medguna.data.images import normalize

    student.eval()
    probs = []
    with torch.no_grad():
        if student.prompts is None:  # the clean view's frozen features are cached
            feats = shared.clean_features[split].to(device)
            probs.append(torch.softmax(student(features=feats).float(), dim=1).cpu())
        else:
            images = shared.images[split]
            for start in range(0, images.shape[0], batch_size):
                batch = images[start:start + batch_size].to(device)
                pixels = normalize(clean_view(batch, out_size=student.encoder.image_size),
                                   shared.preprocessing)
                with autocast():
                    logits = student(pixels=pixels)
                probs.append(torch.softmax(logits.float(), dim=1).cpu())
    student.train()
    return torch.cat(probs) if probs else torch.empty(0, shared.spec.num_classes)


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if key == "confusion_matrix":
            continue
        out[f"{prefix}{key}"] = value
    return out


def split_metrics(probs, labels, spec, prefix: str, teacher=None, threshold: float = 0.95):
    from medguna.method.metrics import classification_metrics, label_free_metrics

    metrics = classification_metrics(probs, labels, list(spec.classes))
    free = label_free_metrics(probs, teacher_labels=teacher, collapse_threshold=threshold)
    merged = {**prefixed(prefix, metrics), **prefixed(prefix, free)}
    return merged, metrics.get("confusion_matrix")
