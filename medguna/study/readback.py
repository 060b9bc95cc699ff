"""Reading back the files a study wrote for its next run (study.json, markers, the confirmation plan).

They are written atomically (medguna.atomic), but a disk that filled, a copy cut short or a hand
edit can still leave one unreadable: each read here names the file and what repairs it, instead of
ending in a JSONDecodeError (medguna.json_records, raising UnreadableRecord).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from typing import Any

from medguna.errors import ConfigError
from medguna.json_records import decoded_text, parse_json_record
from medguna.results import STUDY_FILE


class UnreadableRecord(ConfigError):
    """A file a study wrote for its next run does not parse."""


def read_study_record(plan, restart: Sequence[str], read_text: Callable[[str], str | None], *,
                      log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The earlier run's study.json, or None for a new study.

    An unreadable one cannot tell what the kept results were made with. Restarting every dataset
    needs nothing from it: it is kept beside as study.json.unreadable and written anew. Otherwise
    the study is refused, saying which datasets to restart."""
    path = f"{plan.study_dir.rstrip('/')}/{STUDY_FILE}"
    datasets = [p.dataset for p in plan.datasets]
    restarts = " ".join(f"--restart {d}" for d in datasets)
    repair = (f"it records what the kept results were made with, so this run cannot be checked against "
              f"them. Start the datasets over with {restarts} (the unreadable file is kept beside as "
              f"study.json.unreadable), or use another study.name")
    try:
        text = decoded_text(read_text, path, repair, error=UnreadableRecord)
        return parse_json_record(text, path, repair, error=UnreadableRecord) if text else None
    except UnreadableRecord:
        if not set(datasets) <= set(restart):
            raise
    if "://" not in path:
        shutil.copyfile(path, path + ".unreadable")
    log(f"{path} is unreadable; every dataset restarts, so it is written anew "
        f"(the old file is kept as study.json.unreadable)")
    return None


def completed_samples(read_text: Callable[[str], str | None], path: str,
                      log: Callable[[str], None] = print) -> int:
    """The number of trials a dataset's completion marker covers; 0 without a marker, and 0 (with a
    message) for an unreadable one: the experiment is then resumed, which finds every trial finished
    and writes the marker again from Tune's saved state."""
    try:
        text = read_text(path)
        if text is None:
            return 0
        marker = parse_json_record(text, path, "", error=UnreadableRecord)
        # Markers written before the count was recorded: every trial they counted.
        return int(marker.get("num_samples", sum(marker.get("counts", {}).values())))
    except (UnicodeDecodeError, UnreadableRecord, TypeError, ValueError, AttributeError) as error:
        what = (str(error).rstrip("; ") if isinstance(error, UnreadableRecord)
                else f"{path} is unreadable ({type(error).__name__}: {error})")
        log(f"the completion marker {what}: rebuilding it from the experiment's saved state "
            "(finished trials are not rerun)")
        return 0
