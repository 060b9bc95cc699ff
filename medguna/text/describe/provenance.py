"""The sidecar `<FILE>.provenance.json`: which LLM, prompts and settings made a description file."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import medguna
from medguna.atomic import write_bytes_atomic


def provenance_path(description_file: str | Path) -> Path:
    path = Path(description_file)
    return path.with_name(path.name + ".provenance.json")


def write_json(path: Path, payload: Any) -> bytes:
    """Write JSON atomically (temporary file, then rename); return the bytes written."""
    data = (json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    write_bytes_atomic(path, data)
    return data


def build_provenance(
    *,
    dataset: str,
    identity: dict[str, str],
    sampling: dict[str, Any],
    samples_per_prompt: int,
    prompts: list[dict[str, str]],
    cleaning: dict[str, Any],
    counts: dict[str, dict[str, int]],
    requests_sent: int,
    samples_from_cache: int,
    description_file: Path,
    description_bytes: bytes,
) -> dict[str, Any]:
    """Everything a leaderboard row needs to say which LLM described the classes."""
    return {
        "generator": "medguna describe",
        "medguna_version": medguna.__version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
        "backend": identity["backend"],
        "model": identity["model"],
        "base_url": identity.get("base_url", ""),
        "sampling": sampling,
        "samples_per_prompt": samples_per_prompt,
        "prompts": prompts,
        "cleaning": cleaning,
        "counts": counts,
        "requests_sent": requests_sent,
        "samples_from_cache": samples_from_cache,
        "description_file": description_file.name,
        "description_sha256": hashlib.sha256(description_bytes).hexdigest(),
    }
