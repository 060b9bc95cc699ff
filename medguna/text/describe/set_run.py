"""Generate a description set: every dataset's file of ``set:NAME``, resumable, with provenance.

Datasets whose file is already written and recorded (same content hash) are kept; the others are
generated through `describe_dataset` (cache, cleaning, per-file provenance sidecar). The set's
provenance.json is rewritten after each dataset, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

import medguna
from medguna.data.datasets import DatasetSpec
from medguna.errors import ConfigError, DescriptionError
from medguna.text.describe.backends import Backend, SamplingSettings
from medguna.text.describe.cache import CompletionCache
from medguna.text.describe.cleaning import CleaningRules
from medguna.text.describe.prompts import PROMPT_FAMILIES
from medguna.text.describe.provenance import provenance_path, write_json
from medguna.text.describe.run import describe_dataset
from medguna.text.sets import (
    PROVENANCE_FILE,
    SET_PREFIX,
    check_set_name,
    combined_sha256,
    descriptions_sha256,
    read_set_provenance,
    set_file,
)
from medguna.text.sources import load_descriptions

# What decides a set's sentences besides the datasets: every file of a set must share them, or
# comparing `set:A` with `set:B` would compare a mixture.
GENERATION_KEYS = ("backend", "model", "sampling", "samples_per_prompt", "prompt_families",
                   "cleaning")


@dataclass
class SetResult:
    """What `describe_set` did: per dataset "generated" or "kept", and what it cost."""

    name: str
    folder: Path
    status: dict[str, str] = field(default_factory=dict)
    requests_sent: int = 0
    samples_from_cache: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)


def generation_settings(backend: Backend, sampling: SamplingSettings, samples_per_prompt: int,
                        families: tuple[str, ...], rules: CleaningRules) -> dict[str, Any]:
    identity = backend.identity
    return {"backend": identity["backend"], "model": identity["model"],
            "sampling": sampling.as_dict(), "samples_per_prompt": samples_per_prompt,
            "prompt_families": list(families), "cleaning": asdict(rules)}


def check_same_generator(name: str, existing: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse to add files made with other settings to an existing set."""
    differ = [f"{key}: set has {existing.get(key)!r}, asked {wanted[key]!r}"
              for key in GENERATION_KEYS if existing.get(key) != wanted[key]]
    if differ:
        raise ConfigError(
            f"description set {name!r} was made with other settings ({'; '.join(differ)}); "
            f"rerun with the set's settings or choose a new --set name"
        )


def file_state(name: str, spec: DatasetSpec, sets_dir: Path, provenance: dict[str, Any]) -> str:
    """"missing", "current" (holds the sentences the provenance records), or "ours" (written by
    `medguna describe` but not yet recorded: a run stopped in between). Anything else is a file
    someone changed or put there: refused rather than overwritten."""
    path = set_file(sets_dir, name, spec.name)
    if not path.is_file():
        return "missing"
    entry = provenance.get("datasets", {}).get(spec.name)
    if entry:
        try:
            current = load_descriptions(SET_PREFIX + name, spec, sets_dir=sets_dir)
        except DescriptionError:
            current = None
        if current is not None and descriptions_sha256(current) == entry.get("descriptions_sha256"):
            return "current"
    elif _sidecar_matches(path):
        return "ours"
    raise DescriptionError(
        f"{path} is not the file `medguna describe` recorded in {path.parent / PROVENANCE_FILE} "
        "(edited or added by hand); move it away to generate it again (answers are cached), or "
        "keep the set as it is"
    )


def _sidecar_matches(path: Path) -> bool:
    sidecar = provenance_path(path)
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("description_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == hashlib.sha256(path.read_bytes()).hexdigest()


def describe_set(
    name: str,
    specs: list[DatasetSpec],
    backend: Backend,
    cache: CompletionCache,
    sets_dir: str | Path,
    *,
    sampling: SamplingSettings | None = None,
    samples_per_prompt: int = 10,
    families: tuple[str, ...] = tuple(PROMPT_FAMILIES),
    rules: CleaningRules | None = None,
    max_per_request: int = 8,
    show_progress: bool = True,
) -> SetResult:
    """Write `<sets_dir>/<name>/<dataset>.json` for every spec, and the set's provenance.json."""
    check_set_name(name)
    if not specs:
        raise ConfigError("no dataset to describe: name a study (--study) or datasets (--datasets)")
    sets_dir = Path(sets_dir).expanduser()
    folder = sets_dir / name
    sampling = sampling or SamplingSettings()
    rules = rules or CleaningRules()
    wanted = generation_settings(backend, sampling, samples_per_prompt, families, rules)
    provenance = read_set_provenance(folder)
    if provenance is None:
        provenance = {"set": name, "generator": "medguna describe", **wanted,
                      "base_url": backend.identity.get("base_url", ""),
                      "created_utc": _now(), "datasets": {}}
    else:
        check_same_generator(name, provenance, wanted)
    result = SetResult(name, folder, provenance=provenance)
    with tqdm(specs, desc=f"set {name}", unit="dataset", disable=not show_progress) as progress:
        for spec in progress:
            if file_state(name, spec, sets_dir, provenance) == "current":
                result.status[spec.name] = "kept"
                continue
            done = describe_dataset(
                spec, backend, cache, set_file(sets_dir, name, spec.name), sampling=sampling,
                samples_per_prompt=samples_per_prompt, families=families, rules=rules,
                max_per_request=max_per_request, show_progress=show_progress,
            )
            written = load_descriptions(SET_PREFIX + name, spec, sets_dir=sets_dir)
            provenance["datasets"][spec.name] = {
                "file": f"{spec.name}.json",
                "descriptions_sha256": descriptions_sha256(written),
                "created_utc": _now(),
                "sentences": {class_name: len(s) for class_name, s in written.items()},
                "requests_sent": done.requests_sent,
                "samples_from_cache": done.samples_from_cache,
            }
            _write_provenance(folder, provenance)  # after each dataset: a kill keeps the others
            result.status[spec.name] = "generated"
            result.requests_sent += done.requests_sent
            result.samples_from_cache += done.samples_from_cache
    _write_provenance(folder, provenance)
    return result


def _write_provenance(folder: Path, provenance: dict[str, Any]) -> None:
    hashes = {dataset: entry["descriptions_sha256"]
              for dataset, entry in provenance["datasets"].items()}
    provenance["descriptions_sha256"] = combined_sha256(hashes)
    provenance["medguna_version"] = medguna.__version__
    write_json(folder / PROVENANCE_FILE, provenance)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def summary_lines(result: SetResult) -> list[str]:
    lines = [f"{dataset}: {status}" for dataset, status in result.status.items()]
    lines.append(f"set {result.name!r} in {result.folder}: {len(result.provenance['datasets'])} "
                 f"dataset file(s), {result.requests_sent} requests, "
                 f"{result.samples_from_cache} samples from cache; use it as "
                 f"method.description_source={SET_PREFIX}{result.name}")
    return lines

