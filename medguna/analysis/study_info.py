"""Reading and checking a study's `study.json` (name, datasets, objective, data sources)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medguna.errors import DataError
from medguna.json_records import read_json_record
from medguna.results import STUDY_FILE


@dataclass(frozen=True)
class StudyInfo:
    """What `study.json` says about one study folder `<storage>/<study>/`."""

    path: Path
    name: str
    datasets: tuple[str, ...]
    objective: str
    mode: str
    data_source: dict[str, str] = field(default_factory=dict)
    encoder: str | None = None
    checkpoint: str | None = None
    created: str | None = None
    # set name -> its provenance (backend, model, prompt families, date, sentence hashes)
    description_sets: dict[str, dict] = field(default_factory=dict)
    # What the study searched and with what budget (the report's summary shows them).
    search_space: dict[str, dict] = field(default_factory=dict)
    budget: str | None = None  # "demo" (the demonstration's small budget) or "full"
    num_samples: dict[str, int] = field(default_factory=dict)  # search trials per dataset
    confirm: tuple[int, int] | None = None  # (configurations, fresh seeds) of the confirmation stage


def read_study_info(study_dir: str | Path) -> StudyInfo:
    """Read `<study_dir>/study.json`; DataError naming the file and key when it is unusable."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise DataError(
            f"study folder {study_dir} does not exist; pass the folder <storage>/<study> that the "
            "study runner wrote (it holds study.json)"
        )
    path = study_dir / STUDY_FILE
    if not path.is_file():
        raise DataError(
            f"{path} is missing: {study_dir} is not a finished or started study folder; pass the "
            "folder <storage>/<study> that holds study.json (or wait until the runner has "
            "written it)"
        )
    raw = read_json_record(path, "rewrite or restore it", error=DataError)
    for key in ("study", "datasets", "objective"):
        if key not in raw:
            raise DataError(
                f"{path} has no key {key!r}; the study runner writes it: restore the file"
            )
    datasets = raw["datasets"]
    if (
        not isinstance(datasets, list)
        or not datasets
        or not all(isinstance(d, str) for d in datasets)
    ):
        raise DataError(f"{path}: 'datasets' must be a non-empty list of names, found {datasets!r}")
    mode = raw.get("mode", "max")
    if mode not in ("max", "min"):
        raise DataError(f'{path}: \'mode\' must be "max" or "min", found {mode!r}')
    data_source = raw.get("data_source") or {}
    if not isinstance(data_source, dict):
        raise DataError(
            f"{path}: 'data_source' must map dataset -> real|synthetic, found {data_source!r}"
        )
    description_sets = raw.get("description_sets") or {}
    if not isinstance(description_sets, dict) or not all(
        isinstance(v, dict) for v in description_sets.values()
    ):
        raise DataError(
            f"{path}: 'description_sets' must map set name -> provenance, found {description_sets!r}"
        )
    return StudyInfo(
        path=study_dir,
        name=str(raw["study"]),
        datasets=tuple(datasets),
        objective=str(raw["objective"]),
        mode=mode,
        data_source={str(k): str(v) for k, v in data_source.items()},
        encoder=raw.get("encoder"),
        checkpoint=raw.get("checkpoint"),
        created=raw.get("created"),
        description_sets={str(k): v for k, v in description_sets.items()},
        search_space=_dict(raw.get("search_space")),
        budget=raw.get("budget"),
        num_samples={str(d): int(r["num_samples"]) for d, r in _dict(raw.get("dataset_records")).items()
                     if isinstance(r, dict) and isinstance(r.get("num_samples"), int)},
        confirm=_confirm(raw),
    )


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _confirm(raw: dict) -> tuple[int, int] | None:
    """(top, seeds) the study's configuration gave its confirmation stage, for its budget."""
    study = _dict(_dict(raw.get("config")).get("study"))
    prefix = "demo_" if raw.get("budget") == "demo" else ""
    top, seeds = study.get(f"{prefix}confirm_top"), study.get(f"{prefix}confirm_seeds")
    return (top, seeds) if isinstance(top, int) and isinstance(seeds, int) else None
