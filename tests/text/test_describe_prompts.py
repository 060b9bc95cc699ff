"""Prompt families per class, worded for the dataset's modality."""

import pytest

from medguna.data.datasets import DATASETS, DatasetSpec, get_dataset
from medguna.errors import ConfigError
from medguna.text.describe.prompts import FINDING_PHRASES, build_prompts


def test_shenzhen_prompts_are_one_per_family_per_class_in_label_order() -> None:
    prompts = build_prompts(get_dataset("shenzhen"))
    assert [(p.class_name, p.family) for p in prompts] == [
        ("NORMAL", "appearance"), ("NORMAL", "expert"), ("NORMAL", "contrast"),
        ("TB", "appearance"), ("TB", "expert"), ("TB", "contrast"),
    ]
    assert prompts[3].text == (
        "Describe in several short sentences what pulmonary tuberculosis looks like "
        "on a chest X-ray."
    )
    assert prompts[4].text == (
        "How does a radiologist recognise pulmonary tuberculosis on a chest X-ray? "
        "Answer in several short sentences."
    )
    assert prompts[5].text == (
        "How does pulmonary tuberculosis differ from a normal chest without disease on a "
        "chest X-ray? Answer in several short sentences."
    )


def test_contrast_prompt_names_every_other_class() -> None:
    prompts = build_prompts(get_dataset("isic2018"), families=("contrast",))
    assert len(prompts) == 7
    assert prompts[0].text == (
        "How does melanoma differ from a melanocytic nevus, basal cell carcinoma, actinic "
        "keratosis or intraepithelial carcinoma (Bowen's disease), a benign keratosis-like "
        "lesion, a dermatofibroma or a vascular skin lesion on a dermoscopic image? "
        "Answer in several short sentences."
    )


def test_every_known_class_has_a_readable_phrase() -> None:
    for spec in DATASETS.values():
        for class_name in spec.classes:
            assert (spec.modality, class_name) in FINDING_PHRASES


def test_unknown_class_falls_back_to_spaced_name() -> None:
    spec = DatasetSpec("toy", ("Foo_Bar",), "fundus", "RGB", True, "toy")
    [prompt] = build_prompts(spec, families=("contrast",))
    assert prompt.text.startswith("How does Foo Bar differ from other findings on a colour")


def test_unknown_family_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown prompt families \['looks'\].*appearance"):
        build_prompts(get_dataset("idrid"), families=("appearance", "looks"))


def test_unknown_modality_is_rejected() -> None:
    spec = DatasetSpec("toy", ("A",), "ultrasound", "L", True, "toy")
    with pytest.raises(ConfigError, match="modality 'ultrasound'"):
        build_prompts(spec)
