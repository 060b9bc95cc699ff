"""Decode every image of a dataset and list each one that cannot be read, not just the first.

Used by `medguna data --verify` before a study, and by the image cache, whose build (in a
study's first trial) decodes everything anyway: one failure then names every bad file at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from medguna.data.images import decode_image
from medguna.errors import DataError

MAX_LISTED = 50  # files named in one error message; the rest are counted


def unreadable_message(problems: Sequence[str]) -> str:
    """One message for several DataError texts (each names its file and the fix)."""
    listed = "\n".join(f"  - {problem}" for problem in problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return (f"{len(problems)} image(s) cannot be read:\n{listed}{more}\n"
            "replace or delete each (`medguna data <dataset> --root <folder> --verify` lists them all)")


def _problem(path: str | Path) -> str | None:
    try:
        decode_image(path, "RGB")
    except DataError as error:
        return str(error)
    return None


def unreadable_images(paths: Sequence[str | Path], *, progress: bool = True) -> list[str]:
    """The DataError text of every path that does not decode fully, in the order of `paths`."""
    # PIL releases the GIL while decoding, so threads decode in parallel.
    workers = max(1, min(8, os.cpu_count() or 1, len(paths)))
    problems = []
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
            total=len(paths), desc="verifying images", unit="img", disable=not progress) as bar:
        for problem in pool.map(_problem, paths):
            bar.update(1)
            if problem is not None:
                problems.append(problem)
    return problems
