"""Before Ray: every description set a study may use has every dataset's file, and each is valid.

Without this check each trial that samples `set:NAME` on a dataset the set lacks would fail on its
own, minutes into the study. The check also returns each set's provenance for study.json, with the
hashes of the sentences as the study will read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medguna.config import MethodConfig, StudyConfig
from medguna.data.datasets import get_dataset
from medguna.errors import ConfigError
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
            study = cfg.study.name if missing == datasets else None
            files = ", ".join(str(set_file(sets_dir, name, d)) for d in missing)
            problems.append(f"set {name!r} lacks {files}; make them with: "
                            f"{describe_command(name, missing, sets_dir, provenance, study)}")
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
