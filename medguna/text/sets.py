"""Description sets: one generator's descriptions for several datasets, used as ``set:NAME``.

A `file:PATH` source holds one dataset's classes, so a study over several datasets cannot search
over it. A set is a folder ``<storage.cache_dir>/descriptions/<NAME>/`` holding one
``<dataset>.json`` per dataset (the reference's ``{class_name: [sentence, ...]}`` format) and a
``provenance.json`` saying which LLM, prompts and settings wrote them; ``set:NAME`` resolves to
the file of the trial's dataset. `medguna describe --set NAME` writes sets.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

from medguna.errors import DescriptionError
from medguna.json_records import read_json_record

SET_PREFIX = "set:"
SETS_SUBDIR = "descriptions"  # under storage.cache_dir (data.cache_dir in a trial)
PROVENANCE_FILE = "provenance.json"
# A folder name on every filesystem and in a URL: no separators, no leading dot.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def sets_dir_for(cache_dir: str | Path) -> Path:
    """Where the sets of a study with this ``storage.cache_dir`` live."""
    return Path(cache_dir).expanduser() / SETS_SUBDIR


def check_set_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise DescriptionError(
            f"description set name {name!r} is not usable as a folder name; use letters, digits, "
            "'.', '-' and '_' (not starting with '.' or '-'), e.g. set:gpt-4o-mini"
        )
    return name


def set_name(source: Any) -> str | None:
    """NAME of a ``set:NAME`` source (checked), or None for any other source."""
    if not isinstance(source, str) or not source.startswith(SET_PREFIX):
        return None
    return check_set_name(source[len(SET_PREFIX):])


def set_file(sets_dir: str | Path, name: str, dataset: str) -> Path:
    return Path(sets_dir) / check_set_name(name) / f"{dataset}.json"


def require_set_file(source: str, dataset: str, sets_dir: str | Path | None) -> Path:
    """The file ``source`` (``set:NAME``) names for ``dataset``; a clear error when it is absent."""
    name = set_name(source)
    if name is None:
        raise DescriptionError(f"{source!r} is not a description set; write it as set:NAME")
    if sets_dir is None:
        raise DescriptionError(
            f"description_source {source!r} needs the folder of description sets "
            f"(<storage.cache_dir>/{SETS_SUBDIR}); none was given"
        )
    path = set_file(sets_dir, name, dataset)
    if not path.is_file():
        command = describe_command(name, [dataset], sets_dir, read_set_provenance(path.parent))
        raise DescriptionError(
            f"description set {name!r} has no file for dataset {dataset!r} ({path} is missing); "
            f"make it with: {command}"
        )
    return path


def read_set_provenance(folder: str | Path) -> dict[str, Any] | None:
    """A set's provenance.json, or None when the set has none yet."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    provenance = read_json_record(path, f"delete it and rerun `medguna describe --set {Path(folder).name} ...` "
                                  "(answers are cached, so no request is paid twice)", error=DescriptionError)
    if not isinstance(provenance.get("datasets", {}), dict):
        raise DescriptionError(f"{path} must be a JSON object with a 'datasets' mapping; delete it "
                               "and rerun `medguna describe --set ...`")
    return provenance


def descriptions_sha256(descriptions: dict[str, list[str]]) -> str:
    """SHA-256 of the sentences per class, in class order: equal only for the same sentences.

    Computed on the validated descriptions (not the file's bytes), so the hash a trial records and
    the one a set's provenance records agree whatever the file's spacing.
    """
    canonical = json.dumps(descriptions, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def combined_sha256(hashes: dict[str, str]) -> str:
    """One hash for several datasets' description hashes (dataset names sorted)."""
    text = "".join(f"{dataset}:{hashes[dataset]}\n" for dataset in sorted(hashes))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_command(
    name: str,
    datasets: list[str],
    sets_dir: str | Path,
    provenance: dict[str, Any] | None,
) -> str:
    """The `medguna describe` command that writes ``datasets``' files of set ``name``.

    With a provenance it repeats the generator's settings, so the new files match the set's others;
    without one the model is left for the user to name.
    """
    # --datasets, not --study: a study's datasets may be overridden on its command line.
    parts = ["medguna describe", f"--datasets {','.join(datasets)}", f"--set {name}",
             f"--sets-dir {shlex.quote(str(Path(sets_dir).expanduser().resolve()))}"]
    if not provenance or "backend" not in provenance:
        return " ".join([*parts, "--model <MODEL>"]) + (
            "  (name the LLM with --model; add --base-url URL for a local server or --backend hf "
            "for a local model folder)")
    backend = str(provenance["backend"])
    if backend == "hf":
        parts.append("--backend hf")
    elif backend.startswith("openai-"):
        parts.append(f"--backend openai --api {backend.removeprefix('openai-')}")
        if provenance.get("base_url"):
            parts.append(f"--base-url {shlex.quote(str(provenance['base_url']))}")
    parts.append(f"--model {shlex.quote(str(provenance.get('model')))}")
    sampling = provenance.get("sampling") or {}
    for option, key in (("--temperature", "temperature"), ("--top-p", "top_p"),
                        ("--max-tokens", "max_tokens"), ("--seed", "seed")):
        if sampling.get(key) is not None:
            parts.append(f"{option} {sampling[key]}")
    if provenance.get("samples_per_prompt"):
        parts.append(f"--samples {provenance['samples_per_prompt']}")
    if provenance.get("prompt_families"):
        parts.append(f"--families {','.join(provenance['prompt_families'])}")
    min_words = (provenance.get("cleaning") or {}).get("min_words")
    if min_words is not None:
        parts.append(f"--min-words {min_words}")
    return " ".join(parts)
