"""The typed configuration of a study (studies/conf/): its datasets and budgets, the search, the
resources, the storage; `trial_config` gives each trial's medguna.config.TrialConfig.

Hydra composes the YAML into a plain dict; `from_dict` turns it into these dataclasses, rejecting
unknown keys and wrong types with a message that names the key, so a typo fails before any Ray work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medguna.config import (
    DataConfig,
    MethodConfig,
    ModelConfig,
    RuntimeConfig,
    TrialConfig,
    apply_method_params,
    check,
    method_field_names,
)
from medguna.errors import ConfigError

DATASET_NAMES = ("shenzhen", "montgomery", "guangzhou", "idrid", "isic2018")
DISTRIBUTIONS = ("float", "log", "int", "categorical")


@dataclass
class StudySection:
    name: str = "chestxray"
    datasets: list = field(default_factory=lambda: ["shenzhen", "montgomery", "guangzhou"])
    num_samples: int = 32
    demo_num_samples: int = 3
    demo_method: dict = field(default_factory=dict)
    # Confirmation stage (medguna.study.confirm): the confirm_top best configurations per dataset
    # rerun with confirm_seeds fresh seeds; 0 turns it off. demo_*: the same in the demonstration.
    confirm_top: int = 3
    confirm_seeds: int = 3
    demo_confirm_top: int = 1
    demo_confirm_seeds: int = 2


@dataclass
class DataRoots:
    roots: dict = field(default_factory=dict)
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    synthetic_scale: float = 1.0
    synthetic_seed: int = 0
    synthetic_shift: str = "demo"
    image_size: int = 224
    # A split without some class is refused before Ray (its balanced accuracy ignores that class,
    # its AUROC is undefined); true runs such a study anyway, with a warning.
    allow_missing_classes: bool = False


@dataclass
class SearchConfig:
    space: dict = field(default_factory=dict)
    sampler_seed: int = 9  # as studies/conf/search/default.yaml
    enqueue_reference: bool = True
    # medguna.study.baseline: also run the reference variant (method=reference) at the paper's point.
    baseline_reference_variant: bool = False
    # medguna.study.warm_start: "<storage>/<study>" or "<storage>/<study>:<dataset>"; null: none.
    warm_start: str | None = None
    warm_start_top: int = 3
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2


@dataclass
class ResourcesConfig:
    address: str = "local"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = None
    # What an autoscaling cluster can grow to, for the concurrency limit when max_concurrent_trials
    # is null (medguna/study/concurrency.py): the GPUs it may hold, if the user states it, and the
    # autoscaler config whose node types bound it (where `ray up` leaves it on the head).
    max_cluster_gpus: int | None = None
    autoscaling_config: str | None = "~/ray_bootstrap_config.yaml"
    max_failures: int = 1
    # Running a study again reruns its failed trials only when asked (a failure such as a NaN loss is
    # a result of the configuration); a dataset whose trials all failed reruns them regardless.
    rerun_failed: bool = False
    reuse_actors: bool = True  # multi-GPU (TorchTrainer) trials never reuse (medguna.study.experiment)
    # Training processes per trial on CPU (a TorchTrainer when > 1); with gpus_per_trial > 1
    # there is one process per GPU instead.
    workers_per_trial: int = 1
    # On an autoscaling cluster, how long a study waits for the autoscaler to provide a first
    # trial's resources (GPUs) before it stops with a message; 0: wait without limit.
    resource_wait_s: float = 1800.0

    @property
    def distributed(self) -> bool:
        return self.gpus_per_trial > 1 or self.workers_per_trial > 1

    @property
    def num_workers(self) -> int:
        return int(self.gpus_per_trial) if self.gpus_per_trial > 1 else self.workers_per_trial


# How the study folder is locked against a second driver (medguna.study.lock): flock, a lock file
# with a heartbeat for filesystems without flock (Lustre mounted without it), or flock with that
# file as the fallback.
STUDY_LOCK_KINDS = ("auto", "flock", "file")


@dataclass
class StorageConfig:
    path: str = "medguna_runs"
    cache_dir: str = "medguna_cache"
    lock: str = "auto"  # one of STUDY_LOCK_KINDS


@dataclass
class StudyConfig:
    study: StudySection = field(default_factory=StudySection)
    dataset: dict = field(default_factory=dict)  # the single dataset of `medguna trial`
    data: DataRoots = field(default_factory=DataRoots)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self, search: bool = True) -> StudyConfig:
        """search=False skips the search space: a single trial (`medguna trial`) searches nothing."""
        s, r, q = self.study, self.resources, self.search
        validate_study_name(s.name)
        check(self.storage.lock in STUDY_LOCK_KINDS, "storage.lock", self.storage.lock,
              f"one of {STUDY_LOCK_KINDS}")
        if not s.datasets:
            raise ConfigError("study.datasets is empty: name at least one of " + ", ".join(DATASET_NAMES))
        for name in s.datasets:
            check(name in DATASET_NAMES, "study.datasets", name, f"names from {DATASET_NAMES}")
        unknown_roots = sorted(set(self.data.roots) - set(DATASET_NAMES))
        if unknown_roots:
            raise ConfigError(f"data.roots has unknown dataset(s) {unknown_roots}; known: {DATASET_NAMES}")
        check(s.num_samples >= 1, "study.num_samples", s.num_samples, ">= 1")
        check(s.demo_num_samples >= 1, "study.demo_num_samples", s.demo_num_samples, ">= 1")
        for name in ("confirm_top", "confirm_seeds", "demo_confirm_top", "demo_confirm_seeds"):
            check(getattr(s, name) >= 0, f"study.{name}", getattr(s, name), ">= 0 (0: no confirmation)")
        apply_method_params(self.method, s.demo_method)  # names and ranges of the demo budget
        check(q.scheduler in ("asha", "none"), "search.scheduler", q.scheduler, "asha or none")
        check(q.grace_period >= 1, "search.grace_period", q.grace_period, ">= 1")
        check(q.reduction_factor >= 2, "search.reduction_factor", q.reduction_factor, ">= 2")
        check(q.warm_start_top >= 1, "search.warm_start_top", q.warm_start_top, ">= 1")
        if search:
            validate_space(q.space, self.method)
        check(r.cpus_per_trial > 0, "resources.cpus_per_trial", r.cpus_per_trial, "> 0")
        check(r.gpus_per_trial >= 0, "resources.gpus_per_trial", r.gpus_per_trial, ">= 0")
        if r.gpus_per_trial > 1 and not float(r.gpus_per_trial).is_integer():
            raise ConfigError(f"resources.gpus_per_trial={r.gpus_per_trial!r}: above 1 it must be "
                              "a whole number of GPUs (one training process per GPU)")
        check(r.max_failures >= 0, "resources.max_failures", r.max_failures, ">= 0")
        if r.max_concurrent_trials is not None:
            check(r.max_concurrent_trials >= 1, "resources.max_concurrent_trials", r.max_concurrent_trials,
                   ">= 1, or null to derive it from the cluster")
        if r.max_cluster_gpus is not None:
            check(r.max_cluster_gpus >= 1, "resources.max_cluster_gpus", r.max_cluster_gpus,
                   ">= 1, or null to read it from the autoscaler")
        check(r.workers_per_trial >= 1, "resources.workers_per_trial", r.workers_per_trial, ">= 1")
        self.trial_config(s.datasets[0]).validate()
        return self

    def trial_config(self, dataset: str, method: MethodConfig | None = None) -> TrialConfig:
        """The configuration of one trial of `dataset`, as the trial function receives it."""
        return TrialConfig(
            data=DataConfig(
                dataset=dataset, root=self.data.roots.get(dataset), cache_dir=self.storage.cache_dir,
                val_fraction=self.data.val_fraction, test_fraction=self.data.test_fraction,
                split_seed=self.data.split_seed, synthetic_scale=self.data.synthetic_scale,
                synthetic_seed=self.data.synthetic_seed, synthetic_shift=self.data.synthetic_shift,
                image_size=self.data.image_size,
            ),
            model=dataclasses.replace(self.model),
            method=dataclasses.replace(method or self.method),
            runtime=dataclasses.replace(self.runtime),
        )


def validate_study_name(name: Any) -> None:
    """A study's name is one folder under storage.path, and `--fresh` deletes exactly that folder:
    a name that is empty, absolute, holds a path separator or '..' could point it elsewhere."""
    bad = (not isinstance(name, str) or not name.strip() or name != name.strip() or name == "."
           or ".." in name or any(char in name for char in ("/", "\\", "\0")))
    if bad:
        raise ConfigError(
            f"study.name={name!r} is invalid: expected a single folder name, not empty or '.', "
            "without '/', '\\' or '..' (e.g. study.name=chestxray-v2)"
        )


def validate_space(space: dict, method: MethodConfig) -> None:
    """Check every searched hyperparameter: a known name and a well-formed distribution."""
    known = set(method_field_names())
    for name, spec in space.items():
        key = f"search.space.{name}"
        if name not in known:
            raise ConfigError(f"{key}: {name!r} is not a method hyperparameter; "
                              f"known: {', '.join(sorted(known))}")
        if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
            raise ConfigError(f"{key} must be a mapping with type one of {DISTRIBUTIONS}, got {spec!r}")
        kind = spec["type"]
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "step"}
        extra = sorted(set(spec) - allowed)
        if extra:
            raise ConfigError(f"{key} has unknown field(s) {extra} for type {kind}; allowed: {sorted(allowed)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{key}.choices must be a non-empty list, got {choices!r}")
            samples = choices
        else:
            low, high = spec.get("low"), spec.get("high")
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low >= high:
                raise ConfigError(f"{key}: needs numeric low < high, got low={low!r} high={high!r}")
            if kind == "log" and low <= 0:
                raise ConfigError(f"{key}: a log distribution needs low > 0, got {low!r}")
            if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
                raise ConfigError(f"{key}: an int distribution needs whole-number bounds")
            samples = [low, high]
        for value in samples:  # both ends of the range, or every choice, must be a valid value
            try:
                apply_method_params(method, {name: value})
            except ConfigError as err:
                hint = ""
                if name == "prompt_length" and method.prompt_insertion == "reference":
                    hint = f"; search lengths the reference accepts, e.g. {key}.choices=[0,113]"
                raise ConfigError(f"{key}: value {value!r} is out of range: {err}{hint}") from None
