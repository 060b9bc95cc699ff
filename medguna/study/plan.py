"""What a study will run, decided before any Ray work: per dataset its trial settings, budget,
confirmation and warm start; and the banner that says so.

Where results land is medguna.results' layout, under `StudyPlan.study_dir`.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medguna.config import TrialConfig, apply_method_params, control_banner
from medguna.data.shifts import acquisition_text, check_shift
from medguna.errors import ConfigError
from medguna.models.demo_encoder import encoder_description
from medguna.results import CONFIRM_SUFFIX
from medguna.study.files import is_uri, join
from medguna.study.warm_start import warm_points
from medguna.study_config import StudyConfig


@dataclass
class DatasetPlan:
    dataset: str
    data_source: str  # "real" | "synthetic"
    trial: TrialConfig  # with the budget's method settings applied
    num_samples: int
    confirm_top: int = 0  # confirmation stage (medguna.study.confirm); 0: none
    confirm_seeds: int = 0
    warm_points: list = dataclasses.field(default_factory=list)  # medguna.study.warm_start
    warm_note: str = ""


@dataclass
class StudyPlan:
    config: StudyConfig
    storage: str  # resolved: absolute local path or URI
    budget: str  # "real" | "demo"
    datasets: list[DatasetPlan]
    description_sets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # name -> provenance
    inputs: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # medguna.study.inputs
    resource_wait_s: float | None = None  # medguna.study.resource_wait: None, the cluster can run a trial now

    @property
    def study_dir(self) -> str:
        return join(self.storage, self.config.study.name)


def plan_study(cfg: StudyConfig) -> StudyPlan:
    """Decide what will run, checking data roots before any Ray work."""
    from medguna.data.manifest import is_synthetic_root
    from medguna.study.description_sets import check_description_sets
    from medguna.study.storage import resolve_storage

    real_data = all(cfg.data.roots.get(d) for d in cfg.study.datasets)
    real = real_data and cfg.model.builtin is None
    method = cfg.method if real else apply_method_params(cfg.method, cfg.study.demo_method)
    num_samples = cfg.study.num_samples if real else cfg.study.demo_num_samples
    s = cfg.study
    confirm = (s.confirm_top, s.confirm_seeds) if real else (s.demo_confirm_top, s.demo_confirm_seeds)
    checkpoint, tokenizer = checked_model_paths(cfg)
    plans = []
    for dataset in cfg.study.datasets:
        root = cfg.data.roots.get(dataset)
        if root is not None and not Path(root).expanduser().exists() and not is_uri(root):
            raise ConfigError(f"data.roots.{dataset}={root!r} does not exist: point it at the folder "
                              f"as the publisher ships it, or set it to null for the synthetic stand-in")
        trial = cfg.trial_config(dataset, method)
        if root is not None:
            trial.data.root = str(Path(root).expanduser().resolve())
        trial.data.cache_dir = str(Path(cfg.storage.cache_dir).expanduser().resolve())
        trial.model.checkpoint, trial.model.tokenizer = checkpoint, tokenizer
        trial.validate()
        if root is None:
            check_shift(trial.data.synthetic_shift, dataset)
        source = "real" if root is not None and not is_synthetic_root(root) else "synthetic"
        dataset_plan = DatasetPlan(dataset, source, trial, num_samples, *confirm)
        if cfg.search.warm_start:
            dataset_plan.warm_points, dataset_plan.warm_note = warm_points(
                cfg.search.warm_start, dataset, cfg.search.space, cfg.search.warm_start_top)
        plans.append(dataset_plan)
    sets = check_description_sets(cfg, method)
    return StudyPlan(cfg, resolve_storage(cfg.storage.path), "real" if real else "demo", plans, sets)


def checked_model_paths(cfg: StudyConfig) -> tuple[str | None, str | None]:
    """MedCLIP's weights and tokenizer as absolute paths, found before any Ray work: every trial
    would otherwise fail on its own, and Tune runs trials in their own folders, where a relative
    path points elsewhere. Checked on the machine that runs the study driver."""
    m = cfg.model
    if m.builtin is not None or m.encoder != "medclip-vit" or is_uri(m.checkpoint):
        return m.checkpoint, m.tokenizer
    from medguna.models.checkpoint import find_weights_file
    from medguna.models.encoder import tokenizer_folder

    weights = find_weights_file(m.checkpoint)
    tokenizer = tokenizer_folder(m.tokenizer, weights)
    return str(Path(m.checkpoint).expanduser().resolve()), str(tokenizer.resolve())


DEMONSTRATION_BANNER = ("  ** DEMONSTRATION: SYNTHETIC stand-ins and/or the demonstration encoder; "
                        "numbers say nothing about real performance **")


def banner(plan: StudyPlan) -> str:
    cfg = plan.config
    r = cfg.resources
    lines = [f"medguna study '{cfg.study.name}'",
             *([] if plan.budget == "real" else
               [DEMONSTRATION_BANNER])]
    for p in plan.datasets:
        where = p.trial.data.root or (
            "SYNTHETIC stand-in in the official layout, "
            + acquisition_text(p.trial.data.synthetic_shift, p.dataset, p.trial.data.synthetic_seed))
        lines.append(f"  dataset {p.dataset:<11} {p.data_source:<9} {where}")
    lines += [
        f"  encoder    {cfg.model.encoder}: {encoder_description(cfg.model)}",
        *([f"  control    {control}"] if (control := control_banner(cfg.runtime.control)) else []),
        f"  method     variant={cfg.method.variant}; searching {', '.join(cfg.search.space) or 'nothing'}",
        (f"  trials     {plan.datasets[0].num_samples} per dataset ({plan.budget} budget), "
         f"{plan.datasets[0].trial.method.stage2_epochs} stage-2 epochs, objective {cfg.runtime.objective}"),
        *(f"  set:{name:<10} {info.get('model') or 'written by hand'} ({info.get('backend') or '-'}), "
          f"sentences {info['descriptions_sha256'][:12]}" for name, info in plan.description_sets.items()),
        confirm_line(plan.datasets[0]),
        f"  resources  {r.cpus_per_trial:g} CPU + {r.gpus_per_trial:g} GPU per trial, Ray at {r.address}",
        f"  storage    {plan.study_dir}",
        f"  TensorBoard: tensorboard --logdir {shlex.quote(plan.study_dir)}",
    ]
    return "\n".join(lines)


def confirm_line(p: DatasetPlan) -> str:
    if p.confirm_top <= 0 or p.confirm_seeds <= 0:
        return "  confirm    no confirmation stage (study.confirm_top=0)"
    return (f"  confirm    then the {p.confirm_top} best configuration(s) per dataset again with "
            f"{p.confirm_seeds} fresh seeds each (<dataset>{CONFIRM_SUFFIX}/)")
