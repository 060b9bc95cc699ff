"""Description sources: where the class sentences for stage 1 come from (docs/method.md §2).

A description file is JSON ``{class_name: [sentence, ...]}``, the MedUnA reference's format, so a
user's own LLM file can be dropped in unchanged. ``load_descriptions`` selects a source by the
``description_source`` string, validates it against the dataset and returns the sentences per class
in the dataset's label order.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from medguna.data.datasets import DATASETS, DatasetSpec
from medguna.errors import DescriptionError
from medguna.text.sets import SET_PREFIX, require_set_file

# medguna's 7 CLIP-style templates (docs/method.md §2), filled with the class name; the corrected
# variant's. Uniform wording, one space before the name.
CLASS_TEMPLATES: tuple[str, ...] = (
    "a bad photo of the {}.",
    "a blurred photo of the {}.",
    "a dark photo of the {}.",
    "a small photo of the {}.",
    "a vague photo of the {}.",
    "a large photo of the {}.",
    "a centered photo of the {}.",
)

# The reference's own 7 templates for its five medical datasets, character for character (its
# utils/data_utils.py, ds_specific_templates), including 'a dark photo {}.' with no article and
# 'a centered photo of a{}.' with no space: other strings tokenize differently, so the reference
# variant uses these (docs/method.md §5).
REFERENCE_CLASS_TEMPLATES: tuple[str, ...] = (
    "a bad photo of the {}.",
    "a blurred photo of the {} .",
    "a dark photo {}.",
    "a photo of the small {}.",
    "a photo of the vague {}.",
    "a photo of the large {}.",
    "a centered photo of a{}.",
)
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"medguna": CLASS_TEMPLATES, "reference": REFERENCE_CLASS_TEMPLATES}

FILE_PREFIX = "file:"
# A JSON file in the reference's format (its descriptions/generic/<dataset>.json, or any LLM file)
# plus the templates: the composition of the reference's default `lafter` mode.
REFERENCE_FILE_PREFIX = "reference:"
# medguna's curated sentences plus the templates: the reference's composition, not its sentences.
CURATED_WITH_TEMPLATES = "curated+templates"
NAMED_SOURCES: tuple[str, ...] = ("curated", "templates", "classname", CURATED_WITH_TEMPLATES)
VALID_SOURCES_TEXT = ("curated, templates, classname, curated+templates, file:PATH, reference:PATH, "
                      "set:NAME")


def readable_class_name(class_name: str) -> str:
    """The class name as text: underscores become spaces (as the reference does)."""
    return class_name.replace("_", " ")


def load_descriptions(
    source: str, spec: DatasetSpec, templates: str = "medguna", *, sets_dir: str | Path | None = None
) -> dict[str, list[str]]:
    """Return ``{class: [sentence, ...]}`` for ``spec`` from ``source``, ordered as ``spec.classes``.

    Sources: ``curated`` (files shipped with medguna), ``templates`` (7 CLIP-style templates over the
    class name), ``classname`` (the name alone), ``curated+templates`` (medguna's sentences composed
    as the reference composes its LLM sentences), ``file:PATH`` (a user's JSON file),
    ``reference:PATH`` (a user's file + templates; with the reference's descriptions/generic/
    <dataset>.json this is the reference's default). ``templates`` names the template set,
    "medguna" or "reference" (the reference's exact strings). ``set:NAME`` is the dataset's file of
    description set NAME in ``sets_dir`` (see medguna.text.sets).
    Sentences are stripped, blank ones dropped and exact duplicates removed (first kept).
    """
    if not isinstance(source, str):
        raise DescriptionError(
            f"description_source must be a string, got {type(source).__name__} {source!r}; "
            f"valid sources: {VALID_SOURCES_TEXT}"
        )
    if source == "curated":
        raw = _curated_raw(spec)
    elif source == "templates":
        raw = template_descriptions(spec, templates)
    elif source == "classname":
        raw = {name: [readable_class_name(name)] for name in spec.classes}
    elif source == CURATED_WITH_TEMPLATES:
        raw = _merge(_curated_raw(spec), template_descriptions(spec, templates))
    elif source.startswith(FILE_PREFIX):
        raw = _file_raw(source[len(FILE_PREFIX):], source)
    elif source.startswith(REFERENCE_FILE_PREFIX):
        path_text = source[len(REFERENCE_FILE_PREFIX):]
        raw = _merge(_file_raw(path_text, source), template_descriptions(spec, templates))
    elif source.startswith(SET_PREFIX):
        raw = _file_raw(str(require_set_file(source, spec.name, sets_dir)), source)
    elif source == "reference":
        # The old name promised the reference's sentences but held medguna's: refuse it by name.
        raise DescriptionError(
            "description_source 'reference' is now 'curated+templates' (medguna's curated sentences "
            "plus the 7 templates, composed as the reference composes its LLM sentences); for the "
            "reference's own sentences use 'reference:PATH' with its descriptions/generic/<dataset>.json"
        )
    else:
        raise DescriptionError(
            f"unknown description_source {source!r}; valid sources: {VALID_SOURCES_TEXT}"
        )
    return validate_descriptions(raw, spec, origin=f"description_source {source!r}")


def template_descriptions(spec: DatasetSpec, templates: str = "medguna") -> dict[str, list[str]]:
    """The 7 templates of set ``templates`` filled with each class name (``_`` replaced by spaces)."""
    if templates not in TEMPLATE_SETS:
        raise DescriptionError(f"unknown template set {templates!r}; choose one of {', '.join(TEMPLATE_SETS)}")
    return {
        name: [template.format(readable_class_name(name)) for template in TEMPLATE_SETS[templates]]
        for name in spec.classes
    }


def validate_descriptions(raw: Any, spec: DatasetSpec, origin: str) -> dict[str, list[str]]:
    """Check ``raw`` is ``{class: [str, ...]}`` with exactly ``spec.classes``; clean and order it.

    ``origin`` names where ``raw`` came from (a file path or source) for the error messages.
    """
    if not isinstance(raw, dict):
        raise DescriptionError(
            f"{origin}: the top level must be a JSON object {{class_name: [sentence, ...]}}, "
            f"got {type(raw).__name__}"
        )
    expected = list(spec.classes)
    found = list(raw)
    if set(found) != set(expected):
        missing = [name for name in expected if name not in raw]
        unexpected = [name for name in found if name not in spec.classes]
        raise DescriptionError(
            f"{origin}: class keys do not match dataset {spec.name!r}; "
            f"expected keys {expected}, found keys {found} "
            f"(missing {missing}, unexpected {unexpected}); "
            "rename the keys to the dataset's class names"
        )
    return {name: _clean_sentences(raw[name], name, origin) for name in expected}


def flatten_descriptions(
    descriptions: dict[str, list[str]], spec: DatasetSpec
) -> tuple[list[str], list[int]]:
    """All sentences in class order, and each one's class index in ``spec.classes``."""
    texts: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(spec.classes):
        if name not in descriptions:
            raise DescriptionError(
                f"descriptions have no entry for class {name!r} of dataset {spec.name!r}; "
                f"found keys {list(descriptions)}"
            )
        sentences = descriptions[name]
        texts.extend(sentences)
        labels.extend([index] * len(sentences))
    return texts, labels


def _clean_sentences(value: Any, class_name: str, origin: str) -> list[str]:
    if not isinstance(value, list):
        raise DescriptionError(
            f"{origin}: class {class_name!r} must map to a list of sentences, "
            f"got {type(value).__name__}"
        )
    cleaned: list[str] = []
    seen: set[str] = set()
    for position, entry in enumerate(value):
        if not isinstance(entry, str):
            raise DescriptionError(
                f"{origin}: class {class_name!r} entry {position} is {type(entry).__name__} "
                f"{entry!r}, not a string; every sentence must be a JSON string"
            )
        sentence = entry.strip()
        # Blank lines are debris common in LLM output; they carry no text to embed.
        if sentence and sentence not in seen:
            seen.add(sentence)
            cleaned.append(sentence)
    if not cleaned:
        raise DescriptionError(
            f"{origin}: class {class_name!r} has no sentences (empty or blank only); "
            "give it at least one non-empty sentence"
        )
    return cleaned


def _merge(first: dict[str, list[str]], second: dict[str, list[str]]) -> dict[str, Any]:
    """Per class, ``first``'s sentences then ``second``'s (keys of ``first`` decide)."""
    return {name: list(sentences) + second.get(name, []) for name, sentences in first.items()}


def _curated_raw(spec: DatasetSpec) -> Any:
    resource = resources.files("medguna.text").joinpath("curated", f"{spec.name}.json")
    if not resource.is_file():
        raise DescriptionError(
            f"no curated descriptions for dataset {spec.name!r} (looked for {resource}); "
            "use description_source 'file:PATH' with your own JSON file"
        )
    return _parse_json(resource.read_text(encoding="utf-8"), str(resource))


def _file_raw(path_text: str, source: str) -> Any:
    if not path_text.strip():
        raise DescriptionError(
            f"description_source {source!r} names no file; write it as 'file:/path/to/file.json'"
        )
    path = Path(path_text).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DescriptionError(
            f"description file {str(path)!r} {what} (resolved to {str(path.resolve())!r}); "
            "give the path of a JSON file {class_name: [sentence, ...]}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DescriptionError(
            f"description file {str(path)!r} is not UTF-8 text (byte {error.start}); "
            "save it as UTF-8 JSON"
        ) from None
    return _parse_json(text, str(path))


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DescriptionError(
            f"description file {where!r} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}; fix the file so it is {{class_name: [sentence, ...]}}"
        ) from None


def vocab_texts() -> list[str]:
    """Texts the test-size model's WordPiece vocabulary is built from: our own descriptions."""
    texts: list[str] = []
    for spec in DATASETS.values():
        for source in ("curated", "templates"):
            texts += flatten_descriptions(load_descriptions(source, spec), spec)[0]
    return texts
