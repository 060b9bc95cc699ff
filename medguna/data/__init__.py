"""medguna.data: datasets in their official layouts, splits, synthetic stand-ins, image cache, views.

Names are loaded lazily so that `from medguna.data.datasets import get_dataset` (used by the config
layer) does not pull in torch and polars.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DATASETS": "medguna.data.datasets",
    "DatasetSpec": "medguna.data.datasets",
    "get_dataset": "medguna.data.datasets",
    "Manifest": "medguna.data.manifest",
    "load_manifest": "medguna.data.manifest",
    "SYNTHETIC_MARKER": "medguna.data.manifest",
    "synthesize": "medguna.data.synthetic",
    "decode_image": "medguna.data.images",
    "preprocess_image": "medguna.data.images",
    "load_preprocessed": "medguna.data.images",
    "normalize": "medguna.data.images",
    "PREPROCESSINGS": "medguna.data.images",
    "build_image_cache": "medguna.data.cache",
    "cache_key": "medguna.data.cache",
    "strong_view": "medguna.data.augment",
    "clean_view": "medguna.data.augment",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medguna.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
