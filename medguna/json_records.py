"""Reading one JSON object from a file medguna or Ray wrote (study.json, params.json, markers, plans).

A disk that filled, a copy cut short or a hand edit can leave such a file unreadable: the error names
the file and what repairs it instead of ending in a JSONDecodeError. Each caller passes its repair and
its error class (data and analysis a DataError, a description set a DescriptionError, the tokenizer a
CheckpointError, the study its UnreadableRecord), so it sits on the lowest floor, beside atomic.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medguna.errors import MedgunaError


def parse_json_record(text: str, path: str | Path, repair: str, *,
                      error: type[MedgunaError]) -> dict[str, Any]:
    """`text` (read from `path`) as a JSON object, or `error` naming the file and `repair`."""
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise error(f"{path} is not readable JSON ({exc.__class__.__name__}: {exc}); {repair}") from None
    if not isinstance(value, dict):
        raise error(f"{path} holds {type(value).__name__}, not a JSON object; {repair}")
    return value


def decoded_text(read_text: Callable[[Any], str | None], path: str | Path, repair: str, *,
                 error: type[MedgunaError]) -> str | None:
    """read_text(path), turning undecodable bytes into `error` naming the file and `repair`."""
    try:
        return read_text(path)
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not text ({exc}); {repair}") from None


def read_json_record(path: Path, repair: str, *, error: type[MedgunaError]) -> dict[str, Any]:
    """The JSON object in the local file `path` (which exists), or `error` naming it and `repair`."""
    return parse_json_record(decoded_text(Path.read_text, path, repair, error=error), path, repair,
                             error=error)
