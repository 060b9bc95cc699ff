"""A trial's error as one line a user can read: its message, not Ray's traceback.

Ray hands the driver a trial's exception as a RayTaskError whose text is the whole remote
traceback, coloured with ANSI escape codes, with the exception's own line last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# "medguna.errors.DataError: image ... is truncated" or "ValueError: bad value"
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Retried)): ?(.*)$")
MAX_CHARS = 300


def error_message(error: Any) -> str:
    """`Type: message` of the innermost exception named in `error`'s text, without ANSI codes."""
    text = ANSI_ESCAPE.sub("", str(error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = ""
    for index, line in enumerate(lines):
        match = EXCEPTION_LINE.match(line)
        if match:  # the last one is the cause that surfaced; its message may continue on later lines
            rest = [more for more in lines[index + 1:] if not more.startswith(("File ", "Traceback"))]
            found = f"{match[1]}: {' '.join([match[2], *rest]).strip()}"
    message = found or (lines[-1] if lines else "")
    return message if len(message) <= MAX_CHARS else message[: MAX_CHARS - 3] + "..."


def first_error_message(errors: Iterable[Any]) -> str:
    for error in errors:
        return error_message(error)
    return ""
