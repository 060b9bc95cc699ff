"""The code that runs in Ray's workers: one trial as a Tune function trainable, on one GPU (or a
fraction, or CPUs), or as a Ray Train TorchTrainer of several processes.

Ray 2.60 rejects `Tuner(TorchTrainer)`, so a multi-GPU trial is a small driver function that builds
the trainer; `TuneReportCallback` forwards rank 0's metrics to Tune. Tune schedulers are not used for
these trials (a scheduler that stops a TorchTrainer trial leaks its placement group, ray#54305).
Inside each worker the ordinary trial loop runs; accelerate sees the process group Ray Train set up
and shards every batch across processes. Both paths set a trial up the same way and report through
the same `RayReporter`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from medguna.config import TrialConfig, apply_method_params, from_dict
from medguna.results import PAPER_POINT, method_params

STATE_FILE = "trial_state.pt"

DRIVER_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 256 * 2**20}
"""What the Tune trial driving a TorchTrainer reserves. It only waits on the trainer, whose
workers hold the CPUs and GPUs; Tune refuses an all-zero request ({"cpu": 0}: "empty head and
zero worker bundles"), so the driver reserves the memory of its Python process instead, which
takes no CPU away from the workers."""


class RayReporter:
    """Reports each epoch through Ray (Tune's or Train's session), with the trial's tags and a
    checkpoint of its state, and resumes from the last checkpoint.

    `ray_api`: `ray.tune` for a Tune function trainable, `ray.train` inside a TorchTrainer worker
    (Train V2 expects every rank to report; only `writes_checkpoints` ranks save the state).
    """

    def __init__(self, ray_api, tags: dict[str, Any], *, writes_checkpoints: bool = True) -> None:
        self.ray_api, self.tags, self.writes_checkpoints = ray_api, tags, writes_checkpoints

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        row = {**self.tags, **metrics}
        if state is None or not self.writes_checkpoints:
            self.ray_api.report(row)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, os.path.join(tmp, STATE_FILE))
            self.ray_api.report(row, checkpoint=self.ray_api.Checkpoint.from_directory(tmp))

    def resume_state(self) -> dict[str, Any] | None:
        checkpoint = self.ray_api.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as path:
            return torch.load(os.path.join(path, STATE_FILE), weights_only=True)


def trial_setup(base: dict[str, Any], params: dict[str, Any], study: str,
                sets: dict[str, Any] | None) -> tuple[TrialConfig, dict[str, Any]]:
    """The trial's config with its sampled method hyperparameters applied (the description sets
    the study checked installed on this node), and the tags every result row carries."""
    from medguna.study.description_sets import install_sets
    from medguna.study.space import is_paper_point

    cfg = from_dict(TrialConfig, base)
    install_sets(sets, cfg.data.cache_dir, cfg.data.dataset)
    cfg.method = apply_method_params(cfg.method, params)
    return cfg, {"study": study, PAPER_POINT: is_paper_point(params, fixed=base.get("method"))}


def medguna_trainable(config: dict[str, Any], *, base: dict[str, Any], study: str, code_version: str,
                      sets: dict[str, Any] | None = None) -> None:
    """Tune function trainable: the trial config plus this trial's sampled hyperparameters.

    `sets`: the sentences of the description sets the study checked, for this trial's node.
    """
    from ray import tune

    from medguna.study.failures import input_errors_not_retried
    from medguna.trial.loop import run_trial
    from medguna.versions import CODE_VERSION_ENV

    os.environ[CODE_VERSION_ENV] = code_version  # the driver's commit: nodes get the code without .git
    cfg, tags = trial_setup(base, method_params(config), study, sets)
    trial_dir = tune.get_context().get_trial_dir()
    with input_errors_not_retried(trial_dir):
        run_trial(cfg, RayReporter(tune, tags), log_dir=trial_dir, params=config)


def worker_loop(loop_config: dict[str, Any]) -> None:
    """One process of a TorchTrainer trial."""
    import ray.train

    from medguna.trial.loop import run_trial

    cfg, tags = trial_setup(loop_config["base"], loop_config["params"], loop_config["study"],
                            loop_config.get("sets"))
    if not loop_config["use_gpu"]:
        cfg.runtime.cpu = True  # keeps accelerate multi-process on CPU (ACCELERATE_USE_CPU)
    rank = ray.train.get_context().get_world_rank()
    run_trial(cfg, RayReporter(ray.train, tags, writes_checkpoints=rank == 0),
              log_dir=loop_config["log_dir"] if rank == 0 else None, params=loop_config["config"])


def distributed_trainable(config: dict[str, Any], *, base: dict[str, Any], study: str, num_workers: int,
                          use_gpu: bool, cpus_per_worker: float, storage_path: str,
                          max_failures: int, code_version: str, sets: dict[str, Any] | None = None) -> None:
    """Tune function trainable that runs one trial as a TorchTrainer of `num_workers` processes."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from medguna.versions import CODE_VERSION_ENV

    context = tune.get_context()
    if not use_gpu:
        os.environ["ACCELERATE_USE_CPU"] = "1"
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"base": base, "params": method_params(config), "config": dict(config), "study": study,
                           "use_gpu": use_gpu, "log_dir": context.get_trial_dir(), "sets": sets},
        scaling_config=ray.train.ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=ray.train.RunConfig(
            # Same name and storage on a retry: Ray Train resumes from the run's last checkpoint.
            name=f"train_{context.get_trial_id()}", storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            callbacks=[TuneReportCallback()],
            worker_runtime_env={"env_vars": {CODE_VERSION_ENV: code_version,
                                             **({} if use_gpu else {"ACCELERATE_USE_CPU": "1"})}},
        ),
    )
    trainer.fit()
