"""Text wrappers, zero-shot class prompts and the descriptions fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from medguna.data.datasets import get_dataset
from medguna.errors import ConfigError, DescriptionError
from medguna.text import (
    class_prompts,
    descriptions_fingerprint,
    flatten_descriptions,
    load_descriptions,
    wrap_texts,
)


def test_reference_wrapper_is_chest_xray_for_every_modality() -> None:
    for modality in ("chest_xray", "fundus", "dermoscopy"):
        assert wrap_texts(["MEL", "Red dots are seen."], "reference", modality) == [
            "a photo of a MEL chest x_ray",
            "a photo of a Red dots are seen. chest x_ray",
        ]


def test_modality_wrapper_labels() -> None:
    assert wrap_texts(["TB"], "modality", "chest_xray") == ["a TB chest x-ray"]
    assert wrap_texts(["Stage 1 Retinopathy"], "modality", "fundus") == [
        "a Stage 1 Retinopathy fundus photograph"
    ]
    assert wrap_texts(["BCC"], "modality", "dermoscopy") == ["a BCC dermoscopy image"]


def test_modality_wrapper_sentences_get_a_heading_unless_they_name_the_modality() -> None:
    assert wrap_texts(["Microaneurysms only.", "The optic disc is pink with sharp margins"],
                      "modality", "fundus") == [
        "fundus photograph: Microaneurysms only.",
        "fundus photograph: The optic disc is pink with sharp margins",
    ]
    assert wrap_texts(["Apical cavity in the right upper lobe.",
                       "A frontal chest radiograph with clear lungs.",
                       "This chest x-ray of a child is normal."], "modality", "chest_xray") == [
        "chest x-ray: Apical cavity in the right upper lobe.",
        "A frontal chest radiograph with clear lungs.",
        "This chest x-ray of a child is normal.",
    ]
    assert wrap_texts(["Arborizing vessels on a pink background.",
                       "Under the dermatoscope the mole is brown."], "modality", "dermoscopy") == [
        "dermoscopy image: Arborizing vessels on a pink background.",
        "Under the dermatoscope the mole is brown.",
    ]


def test_none_wrapper_keeps_texts() -> None:
    texts = ["TB", "a bad photo of the TB."]
    assert wrap_texts(texts, "none", "anything") == texts


def test_class_prompts_per_wrapper() -> None:
    idrid = get_dataset("idrid")
    assert class_prompts(idrid) == [
        "a Normal fundus photograph",
        "a Stage 1 Retinopathy fundus photograph",
        "a Stage 2 Retinopathy fundus photograph",
        "a Stage 3 Retinopathy fundus photograph",
        "a Stage 4 Retinopathy fundus photograph",
    ]
    assert class_prompts(idrid, "reference")[1] == "a photo of a Stage 1 Retinopathy chest x_ray"
    assert class_prompts(get_dataset("guangzhou"), "none") == ["NORMAL", "PNEUMONIA"]
    assert class_prompts(get_dataset("shenzhen")) == ["a NORMAL chest x-ray", "a TB chest x-ray"]


def test_unknown_wrapper() -> None:
    with pytest.raises(ConfigError, match=r"unknown text wrapper 'clip'.*modality, reference, none"):
        wrap_texts(["TB"], "clip", "chest_xray")


def test_unknown_modality_for_modality_wrapper() -> None:
    with pytest.raises(ConfigError, match=r"does not know modality 'ct'.*chest_xray, fundus"):
        wrap_texts(["TB"], "modality", "ct")


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_text_to_wrap(bad: object) -> None:
    with pytest.raises(DescriptionError, match="text 1 to wrap"):
        wrap_texts(["TB", bad], "modality", "chest_xray")  # type: ignore[list-item]


# ---- fingerprint -----------------------------------------------------------------------------

def curated_idrid() -> tuple[list[str], list[int]]:
    spec = get_dataset("idrid")
    return flatten_descriptions(load_descriptions("curated", spec), spec)


def test_fingerprint_is_stable_and_sha256_hex() -> None:
    texts, labels = curated_idrid()
    first = descriptions_fingerprint(texts, labels, "modality")
    assert first == descriptions_fingerprint(list(texts), list(labels), "modality")
    assert len(first) == 64 and int(first, 16) >= 0
    # numpy integer labels are the same labels.
    assert descriptions_fingerprint(texts, list(np.array(labels)), "modality") == first


def test_fingerprint_changes_with_one_sentence_label_order_or_wrapper() -> None:
    texts, labels = curated_idrid()
    base = descriptions_fingerprint(texts, labels, "modality")
    edited = list(texts)
    edited[17] = edited[17].rstrip(".") + "!"  # one character of one sentence
    relabelled = list(labels)
    relabelled[0] = 1
    swapped = [texts[1], texts[0], *texts[2:]]
    variants = {
        descriptions_fingerprint(edited, labels, "modality"),
        descriptions_fingerprint(texts, relabelled, "modality"),
        descriptions_fingerprint(swapped, labels, "modality"),
        descriptions_fingerprint(texts, labels, "reference"),
        descriptions_fingerprint(texts[:-1], labels[:-1], "modality"),
    }
    assert base not in variants and len(variants) == 5


def test_fingerprint_separates_text_boundaries() -> None:
    # Plain concatenation would make these two equal.
    assert descriptions_fingerprint(["ab", "c"], [0, 0], "none") != descriptions_fingerprint(
        ["a", "bc"], [0, 0], "none"
    )


def test_fingerprint_length_mismatch() -> None:
    with pytest.raises(DescriptionError, match="got 2 texts but 1 labels"):
        descriptions_fingerprint(["a", "b"], [0], "none")


@pytest.mark.parametrize("label", [0.5, "1", True])
def test_fingerprint_rejects_non_integer_labels(label: object) -> None:
    with pytest.raises(DescriptionError, match="label 1 is .* not an integer class index"):
        descriptions_fingerprint(["a", "b"], [0, label], "none")  # type: ignore[list-item]
