"""On-disk cache of completions, so an interrupted run resumes without paying again.

One small JSON file per sample, named by the SHA-256 of everything that determines it:
back-end, model, prompt, sampling settings and sample index. Secrets are never part of a key
or an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from medguna.atomic import write_text_atomic
from medguna.text.describe.backends import Completion, SamplingSettings

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/medguna/describe")


def cache_key_fields(
    backend: str, model: str, prompt: str, sampling: SamplingSettings, sample_index: int
) -> dict[str, Any]:
    return {
        "backend": backend,
        "model": model,
        "prompt": prompt,
        "sampling": sampling.as_dict(),
        "sample_index": sample_index,
    }


def cache_key(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CompletionCache:
    """Get and put completions by key fields; unreadable entries count as misses."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, fields: dict[str, Any]) -> Completion | None:
        path = self._path(cache_key(fields))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            # Guard against a hash collision or a hand-edited file answering the wrong question.
            if entry["fields"] != fields or not isinstance(entry["text"], str):
                return None
            return Completion(entry["text"], entry.get("finish_reason"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable cache entry %s (%s); it will be fetched again",
                        path, error)
            return None

    def put(self, fields: dict[str, Any], completion: Completion) -> None:
        path = self._path(cache_key(fields))
        entry = {"fields": fields, "text": completion.text,
                 "finish_reason": completion.finish_reason}
        # atomic: a kill mid-write never leaves a half entry
        write_text_atomic(path, json.dumps(entry, ensure_ascii=False, indent=1))
