"""Cache entries rebuilt because they were damaged: told on the worker's stderr and left as a note
the study's driver shows once on its console (Ray keeps workers' output in their logs).

A note is a small JSON file in `<folder>/.medguna_rebuilt/`, where folder is the cache folder of
the entry (the image cache, the split files, the stand-ins); its name is a hash of the message,
so every trial that meets the same damaged entry writes the same note, shown once.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from medguna.atomic import write_json_atomic

NOTES_FOLDER = ".medguna_rebuilt"
# Where notes are looked for under a cache_dir: its own folder and cache folders up to two deep
# (images/, splits/, synthetic/, models/...), never the stand-ins' thousands of image files.
NOTE_PATTERNS = (f"{NOTES_FOLDER}/*.json", f"*/{NOTES_FOLDER}/*.json", f"*/*/{NOTES_FOLDER}/*.json")


def note_rebuild(folder: str | Path, message: str) -> None:
    """Say on stderr that an entry is rebuilt, and leave the note for the driver (best effort)."""
    print(f"[medguna] {message}", file=sys.stderr)
    name = hashlib.sha256(message.encode()).hexdigest()[:20]
    try:
        write_json_atomic(Path(folder) / NOTES_FOLDER / f"{name}.json", {"message": message, "time": time.time()})
    except OSError:
        pass  # a read-only or full cache: the stderr line is all there is


class RebuildNotes:
    """The notes written under `cache_dir` since this object was made, each returned once."""

    def __init__(self, cache_dir: str | Path, since: float | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.since = time.time() if since is None else since
        self.seen: set[str] = set()

    def new(self) -> list[str]:
        import json

        messages = []
        for pattern in NOTE_PATTERNS:
            for path in sorted(self.cache_dir.glob(pattern)):
                try:
                    if path.stat().st_mtime < self.since:
                        continue
                    message = json.loads(path.read_text())["message"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # being replaced, or not a note
                if message not in self.seen:
                    self.seen.add(message)
                    messages.append(message)
        return messages
