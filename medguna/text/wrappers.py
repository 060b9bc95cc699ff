"""Text wrappers: the frame put around each text before it is encoded (docs/method.md §2 and §5.5).

``reference`` reproduces MedUnA: every text goes into "a photo of a {} chest x_ray", even for
fundus and skin images. ``modality`` (the default) names the images' real modality, and treats a
short label ("Stage 1 Retinopathy") and a full sentence differently, so neither becomes garbled.
``none`` leaves texts as they are.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re

from medguna.data.datasets import DatasetSpec
from medguna.errors import ConfigError, DescriptionError
from medguna.text.sources import readable_class_name

REFERENCE_TEMPLATE = "a photo of a {} chest x_ray"
WRAPPERS: tuple[str, ...] = ("modality", "reference", "none")
DEFAULT_WRAPPER = "modality"

# A label reads as an adjective before the modality noun: "a TB chest x-ray".
LABEL_TEMPLATES: dict[str, str] = {
    "chest_xray": "a {} chest x-ray",
    "fundus": "a {} fundus photograph",
    "dermoscopy": "a {} dermoscopy image",
}
# A sentence keeps its own grammar and gets the modality as a short heading.
SENTENCE_PREFIXES: dict[str, str] = {
    "chest_xray": "chest x-ray: ",
    "fundus": "fundus photograph: ",
    "dermoscopy": "dermoscopy image: ",
}
# A sentence that already names its modality needs no heading; repeating it adds only tokens.
MODALITY_MENTIONS: dict[str, re.Pattern[str]] = {
    "chest_xray": re.compile(r"x-?_?\s?ray|radiograph|\bcxr\b|chest film", re.IGNORECASE),
    "fundus": re.compile(r"fundus|fundoscop|funduscop|retinal photograph", re.IGNORECASE),
    "dermoscopy": re.compile(r"dermoscop|dermatoscop", re.IGNORECASE),
}
# Texts with more words than this, or ending like a sentence, are sentences; others are labels.
MAX_LABEL_WORDS = 4
FINGERPRINT_FORMAT = "medguna-text-embedding-input/1"


def is_sentence(text: str) -> bool:
    """True for a full sentence, False for a short label such as a class name."""
    stripped = text.strip()
    return stripped.endswith((".", "!", "?")) or len(stripped.split()) > MAX_LABEL_WORDS


def wrap_text(text: str, wrapper: str, modality: str) -> str:
    """One text in its wrapper (see ``wrap_texts``)."""
    _check_wrapper(wrapper, modality)
    if wrapper == "none":
        return text
    if wrapper == "reference":
        return REFERENCE_TEMPLATE.format(text)
    if not is_sentence(text):
        return LABEL_TEMPLATES[modality].format(text)
    if MODALITY_MENTIONS[modality].search(text):
        return text
    return SENTENCE_PREFIXES[modality] + text


def wrap_texts(texts: list[str], wrapper: str, modality: str) -> list[str]:
    """Every text in ``wrapper`` ("modality", "reference" or "none") for images of ``modality``.

    ``modality`` wraps a label as "a {label} chest x-ray" (or fundus photograph, dermoscopy
    image) and prefixes a sentence with "chest x-ray: " unless it already names the modality.
    """
    _check_wrapper(wrapper, modality)
    for position, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DescriptionError(
                f"text {position} to wrap is {text!r}; every text must be a non-empty string"
            )
    return [wrap_text(text, wrapper, modality) for text in texts]


def class_prompts(spec: DatasetSpec, wrapper: str = DEFAULT_WRAPPER) -> list[str]:
    """One zero-shot prompt per class, in label order: the readable class name, wrapped."""
    names = [readable_class_name(name) for name in spec.classes]
    return wrap_texts(names, wrapper, spec.modality)


def descriptions_fingerprint(texts: list[str], labels: list[int], wrapper: str) -> str:
    """sha256 hex of the exact texts, their labels, order and wrapper (a text-embedding cache key).

    Any change of one sentence, label, order or wrapper changes the key (docs/method.md §5.8); the
    encoder's own identity (checkpoint hash) is for the caller to add to the cache key.
    """
    if len(texts) != len(labels):
        raise DescriptionError(
            f"descriptions_fingerprint got {len(texts)} texts but {len(labels)} labels; "
            "pass one label per text"
        )
    int_labels: list[int] = []
    for position, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str):
            raise DescriptionError(f"text {position} is {type(text).__name__}, not a string")
        try:
            if isinstance(label, bool):
                raise TypeError
            int_labels.append(operator.index(label))
        except TypeError:
            raise DescriptionError(
                f"label {position} is {label!r}, not an integer class index"
            ) from None
    # Canonical JSON: unambiguous boundaries between texts, independent of Python's repr.
    payload = json.dumps(
        {"format": FINGERPRINT_FORMAT, "wrapper": wrapper, "texts": list(texts),
         "labels": int_labels},
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _check_wrapper(wrapper: str, modality: str) -> None:
    if wrapper not in WRAPPERS:
        raise ConfigError(
            f"unknown text wrapper {wrapper!r}; valid wrappers: {', '.join(WRAPPERS)}"
        )
    if wrapper == "modality" and modality not in LABEL_TEMPLATES:
        raise ConfigError(
            f"text wrapper 'modality' does not know modality {modality!r}; known modalities: "
            f"{', '.join(LABEL_TEMPLATES)} (or use wrapper 'reference' or 'none')"
        )
