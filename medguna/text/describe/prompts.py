"""Prompt families for class descriptions, phrased for each dataset's modality.

MedUnA prompted an LLM per class with questions about how the finding looks to an expert.
Raw class names ("MEL", "Stage_2_Retinopathy") make poor prompts, so each known class has a
readable finding phrase; unknown classes fall back to the name with underscores as spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from medguna.data.datasets import DatasetSpec
from medguna.errors import ConfigError


@dataclass(frozen=True)
class ModalityWords:
    image: str  # what one image is called, e.g. "chest X-ray"
    expert: str  # who reads such images


MODALITY_WORDS: dict[str, ModalityWords] = {
    "chest_xray": ModalityWords("chest X-ray", "radiologist"),
    "fundus": ModalityWords("colour fundus photograph", "ophthalmologist"),
    "dermoscopy": ModalityWords("dermoscopic image", "dermatologist"),
}

# Readable finding phrases, keyed by (modality, class name): the same name ("NORMAL") means
# different things on different modalities.
FINDING_PHRASES: dict[tuple[str, str], str] = {
    ("chest_xray", "NORMAL"): "a normal chest without disease",
    ("chest_xray", "TB"): "pulmonary tuberculosis",
    ("chest_xray", "PNEUMONIA"): "pneumonia in a child",
    ("fundus", "Normal"): "a healthy retina without diabetic retinopathy",
    ("fundus", "Stage_1_Retinopathy"): "mild non-proliferative diabetic retinopathy (grade 1)",
    ("fundus", "Stage_2_Retinopathy"): "moderate non-proliferative diabetic retinopathy (grade 2)",
    ("fundus", "Stage_3_Retinopathy"): "severe non-proliferative diabetic retinopathy (grade 3)",
    ("fundus", "Stage_4_Retinopathy"): "proliferative diabetic retinopathy (grade 4)",
    ("dermoscopy", "MEL"): "melanoma",
    ("dermoscopy", "NV"): "a melanocytic nevus",
    ("dermoscopy", "BCC"): "basal cell carcinoma",
    ("dermoscopy", "AKIEC"): "actinic keratosis or intraepithelial carcinoma (Bowen's disease)",
    ("dermoscopy", "BKL"): "a benign keratosis-like lesion",
    ("dermoscopy", "DF"): "a dermatofibroma",
    ("dermoscopy", "VASC"): "a vascular skin lesion",
}

# One template per family; placeholders: finding, image, expert, others.
PROMPT_FAMILIES: dict[str, str] = {
    "appearance": (
        "Describe in several short sentences what {finding} looks like on a {image}."
    ),
    "expert": (
        "How does a {expert} recognise {finding} on a {image}? "
        "Answer in several short sentences."
    ),
    "contrast": (
        "How does {finding} differ from {others} on a {image}? "
        "Answer in several short sentences."
    ),
}


@dataclass(frozen=True)
class ClassPrompt:
    """One prompt sent to the LLM: which class and family it belongs to, and its text."""

    class_name: str
    family: str
    text: str


def finding_phrase(modality: str, class_name: str) -> str:
    """The readable phrase for a class; falls back to the name with spaces for underscores."""
    return FINDING_PHRASES.get((modality, class_name), class_name.replace("_", " "))


def _join_alternatives(phrases: list[str]) -> str:
    if not phrases:  # a one-class dataset has nothing to contrast with
        return "other findings"
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def build_prompts(
    spec: DatasetSpec, families: tuple[str, ...] = tuple(PROMPT_FAMILIES)
) -> list[ClassPrompt]:
    """All prompts for a dataset: for each class (label order), one per family (given order)."""
    unknown = [family for family in families if family not in PROMPT_FAMILIES]
    if unknown or not families:
        raise ConfigError(
            f"unknown prompt families {unknown or '(none given)'}; "
            f"choose from: {', '.join(PROMPT_FAMILIES)}"
        )
    try:
        words = MODALITY_WORDS[spec.modality]
    except KeyError:
        raise ConfigError(
            f"dataset {spec.name!r} has modality {spec.modality!r}, which has no prompt wording; "
            f"known modalities: {', '.join(MODALITY_WORDS)}"
        ) from None
    prompts: list[ClassPrompt] = []
    for class_name in spec.classes:
        others = [finding_phrase(spec.modality, other) for other in spec.classes
                  if other != class_name]
        fields = {
            "finding": finding_phrase(spec.modality, class_name),
            "image": words.image,
            "expert": words.expert,
            "others": _join_alternatives(others),
        }
        for family in families:
            text = PROMPT_FAMILIES[family].format(**fields)
            prompts.append(ClassPrompt(class_name, family, text))
    return prompts
