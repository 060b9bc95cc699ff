"""Before Ray: every description set a study may use has every dataset's file, and each is valid.

Without this check each trial that samples `set:NAME` on a dataset the set lacks would fail on its
own, minutes into the study. The check also returns each set's provenance for study.json, with the
hashes of the sentences as the study will read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medguna.config import MethodConfig
from medguna.data.datasets import get_dataset
from medguna.errors import ConfigError, DescriptionError
from medguna.study_config import StudyConfig
from medguna.text.sets import (
    combined_sha256,
    describe_command,
    descriptions_sha256,
    read_set_provenance,
    set_file,
    set_name,
    sets_dir_for,
)
from medguna.text.sources import load_descriptions

# What study.json keeps of a set's provenance.
PROVENANCE_KEYS = ("backend", "model", "base_url", "prompt_families", "sampling",
                   "samples_per_prompt", "created_utc")


def study_set_names(cfg: StudyConfig, method: MethodConfig) -> list[str]:
    """Names of the sets the study's trials may use: searched choices, or the fixed source."""
    spec = cfg.search.space.get("description_source")
    if isinstance(spec, dict) and spec.get("type") == "categorical":
        sources = list(spec.get("choices") or [])
    else:
        sources = [method.description_source]
    names = [set_name(source) for source in sources]
    return list(dict.fromkeys(name for name in names if name is not None))


def check_description_sets(cfg: StudyConfig, method: MethodConfig) -> dict[str, dict[str, Any]]:
    """ConfigError naming every missing file and the command that writes it; else each set's record.

    Every present file is also loaded as a trial would load it, so wrong class keys or bad JSON
    stop the study here too.
    """
    names = study_set_names(cfg, method)
    if not names:
        return {}
    sets_dir = sets_dir_for(Path(cfg.storage.cache_dir).expanduser().resolve())
    datasets = list(cfg.study.datasets)
    problems: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        missing = [d for d in datasets if not set_file(sets_dir, name, d).is_file()]
        provenance = read_set_provenance(sets_dir / name)
        if missing:
            files = ", ".join(str(set_file(sets_dir, name, d)) for d in missing)
            problems.append(f"set {name!r} lacks {files}; make them with: "
                            f"{describe_command(name, missing, sets_dir, provenance)}")
            continue
        hashes = {d: descriptions_sha256(load_descriptions(f"set:{name}", get_dataset(d),
                                                           sets_dir=sets_dir))
                  for d in datasets}
        records[name] = _record(sets_dir / name, provenance, hashes)
    if problems:
        raise ConfigError("description sets are incomplete for study "
                          f"{cfg.study.name!r} (datasets {datasets}):\n  " + "\n  ".join(problems))
    return records


def _record(folder: Path, provenance: dict[str, Any] | None,
            hashes: dict[str, str]) -> dict[str, Any]:
    """A set's provenance as study.json keeps it; a set written by hand says so."""
    provenance = provenance or {}
    recorded = provenance.get("datasets", {})
    return {
        "folder": str(folder),
        **{key: provenance.get(key) for key in PROVENANCE_KEYS},
        "generator": provenance.get("generator", "unknown (no provenance.json)"),
        "descriptions_sha256": combined_sha256(hashes),
        "datasets": {d: {"descriptions_sha256": h,
                         "matches_provenance": recorded.get(d, {}).get("descriptions_sha256") == h}
                     for d, h in hashes.items()},
    }


def sets_for_trials(plan_sets: dict[str, dict[str, Any]], cache_dir: str | Path,
                    dataset: str) -> dict[str, dict[str, list[str]]]:
    """The sentences of each checked set for ``dataset``, to travel with the trials to their node."""
    sets_dir = sets_dir_for(cache_dir)
    spec = get_dataset(dataset)
    shipped = {}
    for name, record in plan_sets.items():
        shipped[name] = load_descriptions(f"set:{name}", spec, sets_dir=sets_dir)
        checked = record.get("datasets", {}).get(dataset, {}).get("descriptions_sha256")
        if checked and descriptions_sha256(shipped[name]) != checked:  # changed since the check
            raise DescriptionError(
                f"{set_file(sets_dir, name, dataset)} changed after the study checked it; "
                "leave a set's files alone while a study using it starts"
            )
    return shipped


def install_sets(sets: dict[str, dict[str, list[str]]] | None, cache_dir: str | Path,
                 dataset: str) -> None:
    """On a trial's node, before it loads its sentences: write a set's file where it is missing.

    storage.cache_dir is usually node-local, so on a cluster only the driver's node has the sets
    the study checked. A file that is there but holds other sentences (edited during the study, or
    an older set of the same name on this node) fails the trial with the reason rather than let
    its row claim sentences it did not use.
    """
    from medguna.text.describe.provenance import write_json

    spec = get_dataset(dataset)
    sets_dir = sets_dir_for(cache_dir)
    for name, descriptions in (sets or {}).items():
        path = set_file(sets_dir, name, dataset)
        if not path.is_file():
            write_json(path, descriptions)
            continue
        planned = descriptions_sha256(descriptions)
        found = descriptions_sha256(load_descriptions(f"set:{name}", spec, sets_dir=sets_dir))
        if found != planned:
            raise DescriptionError(
                f"{path} holds other sentences (sha256 {found[:16]}) than the study checked "
                f"before it started (sha256 {planned[:16]}); restore the file, or start the study "
                "again with --fresh to use the new sentences"
            )
