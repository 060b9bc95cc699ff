"""The files of one trial folder the analysis reads besides its result rows: params.json (its
hyperparameters) and error.txt (why Ray failed it)."""

from __future__ import annotations

import json
from pathlib import Path

from medguna.errors import DataError
from medguna.json_records import read_json_record
from medguna.results import ERROR_FILE, LEGACY_PAPER_POINT, PAPER_POINT, PARAMS_FILE


def read_params(path: Path) -> dict:
    """The trial's hyperparameters from its params.json ({} when Ray failed it before writing one)."""
    file = path / PARAMS_FILE
    if not file.is_file() and (path / ERROR_FILE).is_file():
        # Ray failed the trial before it wrote params.json (e.g. an actor it could not reuse):
        # a failed trial with its reason, not a partial copy.
        return {}
    if not file.is_file():
        raise DataError(
            f"{file} is missing: every trial folder needs the params.json Ray writes at trial "
            "start; "
            "the folder is partial (copy it again or delete the trial folder)"
        )
    params = read_json_record(
        file, "it holds the trial's hyperparameters: copy it again or delete the trial", error=DataError
    )
    if LEGACY_PAPER_POINT in params:  # written before the paper's point had its name
        params.setdefault(PAPER_POINT, params.pop(LEGACY_PAPER_POINT))
    # Nested values (lists, dicts) cannot be table cells that group and compare: keep them as text.
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()}


def error_reason(path: Path) -> str | None:
    """The reason in the trial's error.txt, or None when it has none."""
    file = path / ERROR_FILE
    if not file.is_file():
        return None
    lines = [line.strip() for line in file.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "error.txt is empty"
    # Ray writes a traceback; the reason is the last "...Error: ..." line, else the last line.
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300]
