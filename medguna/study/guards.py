"""Checks a study passes before Ray starts and before its lock is written.

Each refuses a study that could only fail later (inside every trial, or after minutes of Ray start-up),
or that would destroy or mix what it must keep: a folder that is not a study under --fresh, a split
without a class, a description source that does not resolve, a searched hyperparameter also set as
a fixed method.* value, GPUs the machine does not have.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medguna.errors import ConfigError, DataError, DescriptionError
from medguna.results import STUDY_FILE
from medguna.study.lock import LOCK_FILE


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_study_folder(storage: str, name: str, *, deleting: bool) -> None:
    """storage/<name> must be a medguna study (it has study.json) or empty; a file of that name is
    refused. Where this run deletes in it (--fresh, --restart) anything else is refused, and so is a
    symlink; otherwise a symlink is followed and where it leads is checked the same way.

    Runs before the lock, whose file would otherwise be written into whatever the name points at.
    """
    folder = Path(storage) / name
    if folder.is_symlink():
        target = Path(os.path.realpath(folder))
        if deleting:
            raise ConfigError(
                f"the study folder {folder} is a symlink (to {target}); --fresh and --restart delete only "
                "a study's own folder, never through a link: remove the link yourself (or set "
                f"storage.path={target.parent}), or choose another study.name")
        if not target.is_dir():
            raise ConfigError(f"the study folder {folder} is a symlink to {target}, which is not a folder: "
                              "remove the link or choose another study.name")
        _refuse_non_study(folder, target, "a symlink to ")
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"study.name={name!r} names the file {folder}, not a study folder: choose another "
            f"study.name (or move the file away)")
    if deleting and folder.is_dir():
        _refuse_non_study(folder, folder, "")


def _refuse_non_study(folder: Path, target: Path, how: str) -> None:
    if (target / STUDY_FILE).is_file():
        return
    entries = sorted(e.name + ("/" if e.is_dir() else "") for e in target.iterdir() if not e.name.startswith(LOCK_FILE))
    if entries:
        where = f"{folder} ({how}{target})" if how else str(folder)
        raise ConfigError(
            f"{where} is not a medguna study (it has no {STUDY_FILE}) and holds {len(entries)} "
            f"entr{'y' if len(entries) == 1 else 'ies'}: {_listing(entries)}. A study writes (and "
            "--fresh and --restart delete) only in its own folder: choose another study.name or storage.path")


def check_fixed_not_searched(overrides: Sequence[str], space: dict[str, Any]) -> None:
    """A `method.X=value` override while X is searched would be replaced by every trial's sample:
    refused, so the value the user asked for is never silently ignored."""
    clashes = []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key.startswith("method.") and key[len("method."):] in space:
            clashes.append((key, value))
    if clashes:
        lines = [f"{key}={value} is set, but {key[len('method.'):]} is searched "
                 f"(search.space.{key[len('method.'):]}), so every trial would replace it"
                 for key, value in clashes]
        fixes = " ".join(f"~search.space.{key[len('method.'):]}" for key, _ in clashes)
        raise ConfigError("; ".join(lines) + f". Either drop the method.* value to search it, or take it "
                          f"out of the search space to fix it ({fixes})")


def description_sources(cfg, method) -> list[str]:
    """Every description source a trial of the study may use: searched choices, or the fixed one."""
    spec = cfg.search.space.get("description_source")
    if isinstance(spec, dict) and spec.get("type") == "categorical":
        return [str(s) for s in spec.get("choices") or []]
    return [method.description_source]


def check_description_sources(cfg, method, datasets: Sequence[str]) -> dict[str, dict[str, str]]:
    """Load every source for every dataset as a trial would; refuse the ones that fail, all named.
    Returns dataset -> source -> sha256 of the sentences (what trials will read)."""
    from medguna.data.datasets import get_dataset
    from medguna.text.sets import descriptions_sha256, sets_dir_for
    from medguna.text.sources import load_descriptions

    sets_dir = sets_dir_for(Path(cfg.storage.cache_dir).expanduser().resolve())
    templates = method.class_templates
    hashes: dict[str, dict[str, str]] = {}
    problems = []
    for dataset in datasets:
        for source in description_sources(cfg, method):
            try:
                sentences = load_descriptions(source, get_dataset(dataset), templates, sets_dir=sets_dir)
            except (DescriptionError, ConfigError, DataError, OSError) as error:
                problems.append(f"{dataset}: {error}")
                continue
            hashes.setdefault(dataset, {})[source] = descriptions_sha256(sentences)
    if problems:
        raise ConfigError("description source(s) that cannot be read for the study's datasets:\n  "
                          + "\n  ".join(problems))
    return hashes


def missing_class_text(manifest, missing: dict[str, list[str]]) -> str:
    parts = "; ".join(f"{split} has no {', '.join(names)}" for split, names in missing.items())
    return (f"{manifest.spec.name} at {manifest.root}: {parts} (split file {manifest.split_file}): "
            "balanced accuracy over such a split ignores the absent class and AUROC is undefined")


def check_classes(manifest, *, allow_missing: bool, log: Callable[[str], None]) -> None:
    """Refuse a root with one class; refuse (or, when allowed, warn loudly about) a split that
    lacks one of the dataset's classes."""
    present = set(manifest.table["label"].unique().to_list())
    if len(present) < 2:
        names = [manifest.spec.classes[i] for i in sorted(present)]
        raise DataError(f"{manifest.spec.name} at {manifest.root} has images of one class only "
                        f"({', '.join(names) or 'none'}); a study needs every class "
                        f"({', '.join(manifest.spec.classes)}): point data.roots.{manifest.spec.name} "
                        "at the whole dataset")
    from medguna.data.manifest import missing_classes

    missing = missing_classes(manifest)
    if not missing:
        return
    text = missing_class_text(manifest, missing)
    if allow_missing:
        log(f"WARNING: {text}. Running anyway (data.allow_missing_classes=true).")
        return
    raise DataError(f"{text}. Add images of the missing classes, change data.split_seed / "
                    "data.val_fraction / data.test_fraction, or set data.allow_missing_classes=true "
                    "to run anyway")


def check_local_gpus(resources, device_count: Callable[[], int] | None = None) -> None:
    """On Ray started here (address=local) the cluster is this machine: trials asking for more GPUs
    than it has would wait forever, so the study is refused before Ray starts."""
    if resources.address != "local" or resources.gpus_per_trial <= 0:
        return
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count
    have = device_count()
    if have < resources.gpus_per_trial:
        raise ConfigError(
            f"resources.gpus_per_trial={resources.gpus_per_trial:g} but this machine has {have} GPU(s) "
            f"and resources.address=local runs the study on it alone: trials would wait forever. Set "
            f"resources.gpus_per_trial=0 (or resources=local), or run on a cluster with GPUs "
            f"(resources.address=auto)")


def needed_gpus(resources) -> float:
    """GPUs one trial holds at once (a distributed trial: one per worker)."""
    if resources.gpus_per_trial <= 0:
        return 0.0
    return float(math.ceil(resources.gpus_per_trial)) if resources.gpus_per_trial > 1 else resources.gpus_per_trial


def check_before_ray(plan, *, fresh: bool, restart: Sequence[str], log: Callable[[str], None]) -> None:
    """Every check above on a planned study; fills plan.inputs (dataset -> its input hashes)."""
    from medguna.data.manifest import load_manifest, read_synthetic_marker
    from medguna.study.inputs import dataset_inputs, model_inputs
    from medguna.trial.prepare import synthetic_root

    cfg = plan.config
    if "://" not in plan.storage:
        check_study_folder(plan.storage, cfg.study.name, deleting=fresh or bool(restart))
    check_local_gpus(cfg.resources)
    method = plan.datasets[0].trial.method
    descriptions = check_description_sources(cfg, method, [p.dataset for p in plan.datasets])
    model = model_inputs(plan.datasets[0].trial.model)
    for p in plan.datasets:
        d = p.trial.data
        if d.root is None:  # the stand-in under cache_dir: written (or repaired) here, not in every trial
            root = synthetic_root(d.cache_dir, d.dataset, d.synthetic_scale, seed=d.synthetic_seed,
                                  shift=d.synthetic_shift)
        else:
            root = d.root
            read_synthetic_marker(root)  # a stand-in passed as a root: its marker must be readable
        manifest = load_manifest(d.dataset, root, Path(d.cache_dir) / "splits", val_fraction=d.val_fraction,
                                 test_fraction=d.test_fraction, split_seed=d.split_seed)
        check_classes(manifest, allow_missing=cfg.data.allow_missing_classes, log=log)
        plan.inputs[p.dataset] = dataset_inputs(descriptions.get(p.dataset, {}), model, manifest)
