"""Class descriptions for MedUnA's text side: sources, wrappers and the embedding cache key."""

from medguna.text.sources import (
    CLASS_TEMPLATES,
    VALID_SOURCES_TEXT,
    flatten_descriptions,
    load_descriptions,
    readable_class_name,
    template_descriptions,
    validate_descriptions,
)
from medguna.text.wrappers import (
    DEFAULT_WRAPPER,
    REFERENCE_TEMPLATE,
    WRAPPERS,
    class_prompts,
    descriptions_fingerprint,
    wrap_texts,
)

__all__ = [
    "CLASS_TEMPLATES",
    "DEFAULT_WRAPPER",
    "REFERENCE_TEMPLATE",
    "VALID_SOURCES_TEXT",
    "WRAPPERS",
    "class_prompts",
    "descriptions_fingerprint",
    "flatten_descriptions",
    "load_descriptions",
    "readable_class_name",
    "template_descriptions",
    "validate_descriptions",
    "wrap_texts",
]
