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

from medguna.data.datasets import DatasetSpec
from medguna.errors import DescriptionError
from medguna.text.sets import SET_PREFIX, require_set_file

# The 7 CLIP-style templates of docs/method.md §2, filled with the class name.
CLASS_TEMPLATES: tuple[str, ...] = (
    "a bad photo of the {}.",
    "a blurred photo of the {}.",
    "a dark photo of the {}.",
    "a small photo of the {}.",
    "a vague photo of the {}.",
    "a large photo of the {}.",
    "a centered photo of the {}.",
)

FILE_PREFIX = "file:"
# Not in the reference: a user's own (e.g. LLM) file plus the templates, which is exactly what the
# reference's `lafter` mode does with its GPT files.
REFERENCE_FILE_PREFIX = "reference:"
NAMED_SOURCES: tuple[str, ...] = ("curated", "templates", "classname", "reference")
VALID_SOURCES_TEXT = ("curated, templates, classname, reference, file:PATH, reference:PATH, "
                      "set:NAME")


def readable_class_name(class_name: str) -> str:
    """The class name as text: underscores become spaces (as the reference does)."""
    return class_name.replace("_", " ")


def load_descriptions(
    source: str, spec: DatasetSpec, *, sets_dir: str | Path | None = None
) -> dict[str, list[str]]:
    """Return ``{class: [sentence, ...]}`` for ``spec`` from ``source``, ordered as ``spec.classes``.

    Sources: ``curated`` (files shipped with medguna), ``templates`` (7 CLIP-style templates over the
    class name), ``classname`` (the name alone), ``reference`` (curated + templates: the paper's
    default), ``file:PATH`` (a user's JSON file), ``reference:PATH`` (a user's file + templates),
    ``set:NAME`` (the dataset's file of description set NAME in ``sets_dir``, see medguna.text.sets).
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
        raw = template_descriptions(spec)
    elif source == "classname":
        raw = {name: [readable_class_name(name)] for name in spec.classes}
    elif source == "reference":
        raw = _merge(_curated_raw(spec), template_descriptions(spec))
    elif source.startswith(FILE_PREFIX):
        raw = _file_raw(source[len(FILE_PREFIX):], source)
    elif source.startswith(REFERENCE_FILE_PREFIX):
        path_text = source[len(REFERENCE_FILE_PREFIX):]
        raw = _merge(_file_raw(path_text, source), template_descriptions(spec))
    elif source.startswith(SET_PREFIX):
        raw = _file_raw(str(require_set_file(source, spec.name, sets_dir)), source)
    else:
        raise DescriptionError(
            f"unknown description_source {source!r}; valid sources: {VALID_SOURCES_TEXT}"
        )
    return validate_descriptions(raw, spec, origin=f"description_source {source!r}")


def template_descriptions(spec: DatasetSpec) -> dict[str, list[str]]:
    """The 7 templates filled with each class name (``_`` replaced by spaces)."""
    return {
        name: [template.format(readable_class_name(name)) for template in CLASS_TEMPLATES]
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
