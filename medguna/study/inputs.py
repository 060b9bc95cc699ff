"""Content fingerprints of what a study's trials read, recorded per dataset in study.json.

Resume and extend compare configuration values; the files behind them (a description file, the
checkpoint's weights, the tokenizer, the images under a data root) can change while every value
stays the same, and the new trials would then be ranked with the old ones. So each dataset's record
carries a hash per input, and a run whose hashes differ is refused, naming the input.

Images: thousands of files, read on every run, so each image is hashed by its size and the sha256
of its first and last 64 KiB (the whole file when smaller), with its relative path, label and split.
Unlike size and mtime, this sees an image replaced by another of the same size (a new PNG or JPEG
differs in its header and first compressed block) and ignores a copy or `touch` that keeps the
bytes; it reads at most 128 KiB per image, about a second for 5,000 images on an SSD.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from medguna.hashing import file_sha256

SAMPLE_BYTES = 64 * 1024


def sampled_file_sha256(path: Path) -> str:
    """sha256 of the file's size, first and last SAMPLE_BYTES (the whole file when shorter)."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"{size}\n".encode())
    with open(path, "rb") as handle:
        if size <= 2 * SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(size - SAMPLE_BYTES)
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def images_sha256(manifest) -> str:
    """One hash over every image of the manifest: relative path, label, split and sampled content."""
    digest = hashlib.sha256()
    for path, label, split in manifest.table.select("path", "label", "split").iter_rows():
        relative = Path(path).relative_to(manifest.root).as_posix()
        digest.update(f"{relative}\t{label}\t{split}\t{sampled_file_sha256(Path(path))}\n".encode())
    return digest.hexdigest()


def model_inputs(model) -> dict[str, str]:
    """sha256 of the checkpoint's weights file and of the tokenizer's vocabulary (a real checkpoint;
    the shipped encoders are part of the code version)."""
    if model.builtin is not None or "://" in str(model.checkpoint):
        return {}
    from medguna.models.checkpoint import find_weights_file
    from medguna.models.tokenizer import tokenizer_fingerprint

    inputs = {"checkpoint": file_sha256(find_weights_file(model.checkpoint))}
    if model.tokenizer:
        inputs["tokenizer"] = tokenizer_fingerprint(model.tokenizer)
    return inputs


def dataset_inputs(descriptions: dict[str, str], model: dict[str, str], manifest=None) -> dict[str, str]:
    """The flat record of one dataset's inputs: `descriptions:<source>`, checkpoint, tokenizer, images."""
    inputs: dict[str, Any] = {f"descriptions:{source}": sha for source, sha in sorted(descriptions.items())}
    inputs.update(model)
    if manifest is not None:
        inputs["images"] = images_sha256(manifest)
    return inputs


INPUT_NAMES = {
    "checkpoint": "the checkpoint's weights (model.checkpoint)",
    "tokenizer": "the tokenizer's vocabulary (model.tokenizer)",
    "images": "the images under data.roots.{dataset} (files, labels or splits)",
}


def input_name(key: str, dataset: str) -> str:
    if key.startswith("descriptions:"):
        return f"the sentences of description source {key[len('descriptions:'):]!r}"
    return INPUT_NAMES.get(key, key).format(dataset=dataset)


def changed_inputs(old: dict[str, str] | None, new: dict[str, str] | None, dataset: str) -> list[str]:
    """What differs between two records of a dataset's inputs, in words. Inputs only one side records
    (a study started before inputs were recorded, a source added to the space) are not compared:
    a new source's trials are new trials, and an old record cannot be checked."""
    if not old or not new:
        return []
    return [f"{input_name(key, dataset)} changed (sha256 {old[key][:12]} -> {new[key][:12]})"
            for key in sorted(set(old) & set(new)) if old[key] != new[key]]
