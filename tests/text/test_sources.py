"""Description sources: curated files, templates, class names, reference mix, user files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medguna.data.datasets import DATASETS, DatasetSpec, get_dataset
from medguna.errors import DescriptionError
from medguna.text import CLASS_TEMPLATES, flatten_descriptions, load_descriptions

TWO_CLASS = DatasetSpec("toy", ("NORMAL", "Stage_1_Retinopathy"), "fundus", "RGB", True, "toy")


def write_json(path: Path, content: object) -> str:
    path.write_text(json.dumps(content), encoding="utf-8")
    return f"file:{path}"


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_curated_file_valid_with_30_distinct_sentences_per_class(dataset: str) -> None:
    spec = get_dataset(dataset)
    descriptions = load_descriptions("curated", spec)
    assert list(descriptions) == list(spec.classes)
    for name, sentences in descriptions.items():
        assert len(set(sentences)) >= 30, (dataset, name, len(set(sentences)))
        for sentence in sentences:
            # Real sentences, of a length LLM descriptions have.
            assert 6 <= len(sentence.split()) <= 40, sentence
            assert sentence[-1] in ".:", sentence
    # No sentence may describe two classes: a shared sentence would teach the adapter nothing.
    all_sentences = [s for sentences in descriptions.values() for s in sentences]
    assert len(all_sentences) == len(set(all_sentences))


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_curated_sentences_are_not_templates_of_one_another(dataset: str) -> None:
    descriptions = load_descriptions("curated", get_dataset(dataset))
    for sentences in descriptions.values():
        openings = {" ".join(s.lower().split()[:3]) for s in sentences}
        assert len(openings) >= 0.8 * len(sentences)


def test_curated_names_the_modality_of_each_dataset() -> None:
    joined = {
        name: " ".join(s for v in load_descriptions("curated", get_dataset(name)).values() for s in v)
        for name in DATASETS
    }
    assert "radiograph" in joined["shenzhen"] and "radiograph" in joined["montgomery"]
    assert "paediatric" in joined["guangzhou"]
    assert "fundus" in joined["idrid"] and "4-2-1 rule" in joined["idrid"]
    assert "dermoscop" in joined["isic2018"]


def test_templates_exact_output_for_two_classes() -> None:
    descriptions = load_descriptions("templates", TWO_CLASS)
    assert descriptions["Stage_1_Retinopathy"] == [
        "a bad photo of the Stage 1 Retinopathy.",
        "a blurred photo of the Stage 1 Retinopathy.",
        "a dark photo of the Stage 1 Retinopathy.",
        "a small photo of the Stage 1 Retinopathy.",
        "a vague photo of the Stage 1 Retinopathy.",
        "a large photo of the Stage 1 Retinopathy.",
        "a centered photo of the Stage 1 Retinopathy.",
    ]
    assert descriptions["NORMAL"][0] == "a bad photo of the NORMAL."
    assert len(CLASS_TEMPLATES) == 7


def test_classname_exact_output() -> None:
    assert load_descriptions("classname", get_dataset("idrid")) == {
        "Normal": ["Normal"],
        "Stage_1_Retinopathy": ["Stage 1 Retinopathy"],
        "Stage_2_Retinopathy": ["Stage 2 Retinopathy"],
        "Stage_3_Retinopathy": ["Stage 3 Retinopathy"],
        "Stage_4_Retinopathy": ["Stage 4 Retinopathy"],
    }


def test_curated_plus_templates_is_curated_then_templates() -> None:
    spec = get_dataset("guangzhou")
    curated = load_descriptions("curated", spec)
    composed = load_descriptions("curated+templates", spec)
    for name in spec.classes:
        templates = [t.format(name) for t in CLASS_TEMPLATES]
        assert composed[name] == curated[name] + templates
    assert composed["PNEUMONIA"][-1] == "a centered photo of the PNEUMONIA."


def test_old_reference_name_is_refused_with_its_new_names() -> None:
    # It held medguna's sentences, not the reference's: the name must not survive silently.
    with pytest.raises(DescriptionError, match=r"now 'curated\+templates'.*reference:PATH"):
        load_descriptions("reference", TWO_CLASS)


# The reference's ds_specific_templates for its five medical datasets (utils/data_utils.py),
# typed out from the reference, not imported from medguna.
REFERENCE_SEVEN = [
    "a bad photo of the {}.",
    "a blurred photo of the {} .",
    "a dark photo {}.",
    "a photo of the small {}.",
    "a photo of the vague {}.",
    "a photo of the large {}.",
    "a centered photo of a{}.",
]


def test_reference_template_set_is_the_reference_strings_with_underscores_as_spaces() -> None:
    descriptions = load_descriptions("templates", get_dataset("idrid"), "reference")
    assert descriptions["Stage_2_Retinopathy"] == [t.format("Stage 2 Retinopathy") for t in REFERENCE_SEVEN]
    assert descriptions["Normal"][6] == "a centered photo of aNormal."
    assert descriptions["Normal"][2] == "a dark photo Normal."
    with pytest.raises(DescriptionError, match="unknown template set 'clip'"):
        load_descriptions("templates", TWO_CLASS, "clip")


def test_reference_descriptions_file_reads_in_the_reference_composition(tmp_path: Path) -> None:
    """A file in exactly the reference's descriptions/generic/ISIC2018.json format.

    Its keys are the class names as the reference spells them, in its own order (MEL, DF, BKL, ...,
    not the label order), and its sentences carry the stray spaces of its LLM output. The reference
    builds stage 1's texts as every sentence of each class in label order, then the 7 templates.
    """
    spec = get_dataset("isic2018")
    file_order = ["MEL", "DF", "BKL", "AKIEC", "NV", "BCC", "VASC"]
    content = {name: [f" A dermoscopic image of {name} shows feature {i}.", f"{name} lesion {i}. "]
               for i, name in enumerate(file_order)}
    path = tmp_path / "ISIC2018.json"
    path.write_text(json.dumps(content, indent=4), encoding="utf-8")
    descriptions = load_descriptions(f"reference:{path}", spec, "reference")
    assert list(descriptions) == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert descriptions["DF"] == ["A dermoscopic image of DF shows feature 1.", "DF lesion 1.",
                                  *(t.format("DF") for t in REFERENCE_SEVEN)]
    texts, labels = flatten_descriptions(descriptions, spec)
    assert len(texts) == 7 * (2 + 7) and labels[:9] == [0] * 9 and labels[9:18] == [1] * 9
    assert texts[9] == "A dermoscopic image of NV shows feature 4."


def test_file_source_orders_strips_and_deduplicates(tmp_path: Path) -> None:
    source = write_json(tmp_path / "mine.json", {
        "Stage_1_Retinopathy": ["  Few red dots.  ", "Few red dots.", "", "Microaneurysms only."],
        "NORMAL": ["Healthy retina.\n", "Healthy retina."],
    })
    descriptions = load_descriptions(source, TWO_CLASS)
    assert list(descriptions) == ["NORMAL", "Stage_1_Retinopathy"]
    assert descriptions == {
        "NORMAL": ["Healthy retina."],
        "Stage_1_Retinopathy": ["Few red dots.", "Microaneurysms only."],
    }


def test_reference_with_user_file_appends_templates(tmp_path: Path) -> None:
    path = tmp_path / "llm.json"
    write_json(path, {"NORMAL": ["Healthy retina."], "Stage_1_Retinopathy": ["Red dots."]})
    descriptions = load_descriptions(f"reference:{path}", TWO_CLASS)
    assert descriptions["NORMAL"][:2] == ["Healthy retina.", "a bad photo of the NORMAL."]
    assert len(descriptions["Stage_1_Retinopathy"]) == 8


def test_flatten_gives_texts_and_class_indices() -> None:
    descriptions = {"NORMAL": ["a", "b"], "Stage_1_Retinopathy": ["c"]}
    assert flatten_descriptions(descriptions, TWO_CLASS) == (["a", "b", "c"], [0, 0, 1])
    texts, labels = flatten_descriptions(load_descriptions("templates", get_dataset("isic2018")),
                                         get_dataset("isic2018"))
    assert len(texts) == 49 and labels[:7] == [0] * 7 and labels[-1] == 6


def test_flatten_missing_class_raises() -> None:
    with pytest.raises(DescriptionError, match=r"no entry for class 'Stage_1_Retinopathy'"):
        flatten_descriptions({"NORMAL": ["a"]}, TWO_CLASS)


# ---- bad input -------------------------------------------------------------------------------

def test_unknown_source_lists_valid_ones() -> None:
    with pytest.raises(DescriptionError) as error:
        load_descriptions("gpt4", TWO_CLASS)
    message = str(error.value)
    assert "'gpt4'" in message
    for valid in ("curated", "templates", "classname", "curated+templates", "file:PATH", "reference:PATH"):
        assert valid in message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(DescriptionError, match=r"nope\.json.*does not exist"):
        load_descriptions(f"file:{missing}", TWO_CLASS)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DescriptionError, match="is a directory"):
        load_descriptions(f"file:{tmp_path}", TWO_CLASS)


def test_empty_file_path() -> None:
    with pytest.raises(DescriptionError, match="names no file"):
        load_descriptions("file:", TWO_CLASS)


def test_invalid_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "NORMAL": ["ok"],\n  "Stage_1_Retinopathy": ["a" "b"]\n}\n')
    with pytest.raises(DescriptionError, match=r"broken\.json.*not valid JSON.*line 3 column 31"):
        load_descriptions(f"file:{path}", TWO_CLASS)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"NORMAL": ["caf\u00e9"]}'.encode("latin-1"))
    with pytest.raises(DescriptionError, match="not UTF-8"):
        load_descriptions(f"file:{path}", TWO_CLASS)


def test_top_level_not_object(tmp_path: Path) -> None:
    source = write_json(tmp_path / "list.json", [["a"], ["b"]])
    with pytest.raises(DescriptionError, match="top level must be a JSON object.*got list"):
        load_descriptions(source, TWO_CLASS)


def test_wrong_keys_list_expected_and_found(tmp_path: Path) -> None:
    source = write_json(tmp_path / "keys.json", {"NORMAL": ["a"], "Stage 1": ["b"]})
    with pytest.raises(DescriptionError) as error:
        load_descriptions(source, TWO_CLASS)
    message = str(error.value)
    assert "expected keys ['NORMAL', 'Stage_1_Retinopathy']" in message
    assert "found keys ['NORMAL', 'Stage 1']" in message
    assert "missing ['Stage_1_Retinopathy']" in message and "unexpected ['Stage 1']" in message


def test_extra_key_is_rejected(tmp_path: Path) -> None:
    source = write_json(tmp_path / "extra.json",
                        {"NORMAL": ["a"], "Stage_1_Retinopathy": ["b"], "TB": ["c"]})
    with pytest.raises(DescriptionError, match=r"unexpected \['TB'\]"):
        load_descriptions(source, TWO_CLASS)


@pytest.mark.parametrize("entries", [[], ["", "   \n"]])
def test_empty_class(tmp_path: Path, entries: list[str]) -> None:
    source = write_json(tmp_path / "empty.json", {"NORMAL": ["a"], "Stage_1_Retinopathy": entries})
    with pytest.raises(DescriptionError, match="class 'Stage_1_Retinopathy' has no sentences"):
        load_descriptions(source, TWO_CLASS)


def test_non_string_entry(tmp_path: Path) -> None:
    source = write_json(tmp_path / "types.json", {"NORMAL": ["a", 3], "Stage_1_Retinopathy": ["b"]})
    with pytest.raises(DescriptionError, match="class 'NORMAL' entry 1 is int 3, not a string"):
        load_descriptions(source, TWO_CLASS)


def test_class_value_not_a_list(tmp_path: Path) -> None:
    source = write_json(tmp_path / "str.json", {"NORMAL": "a", "Stage_1_Retinopathy": ["b"]})
    with pytest.raises(DescriptionError, match="class 'NORMAL' must map to a list.*got str"):
        load_descriptions(source, TWO_CLASS)


def test_curated_for_unknown_dataset() -> None:
    with pytest.raises(DescriptionError, match=r"no curated descriptions for dataset 'toy'.*file:PATH"):
        load_descriptions("curated", TWO_CLASS)


def test_source_not_a_string() -> None:
    with pytest.raises(DescriptionError, match="must be a string"):
        load_descriptions(None, TWO_CLASS)  # type: ignore[arg-type]
