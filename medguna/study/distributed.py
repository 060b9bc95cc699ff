"""Multi-GPU trials: each Tune trial drives a Ray Train TorchTrainer, one process per GPU.

Ray 2.60 rejects `Tuner(TorchTrainer)`, so the trial is a small driver function that builds the
trainer; `TuneReportCallback` forwards rank 0's metrics to Tune. Tune schedulers are not used for
these trials (a scheduler that stops a TorchTrainer trial leaks its placement group, ray#54305).
Inside each worker the ordinary trial loop runs; accelerate sees the process group Ray Train set
up and shards every batch across processes.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from medguna.config import TrialConfig, apply_method_params, from_dict
from medguna.results import PAPER_POINT, method_params

DRIVER_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 256 * 2**20}
"""What the Tune trial driving a TorchTrainer reserves. It only waits on the trainer, whose
workers hold the CPUs and GPUs; Tune refuses an all-zero request ({"cpu": 0}: "empty head and
zero worker bundles"), so the driver reserves the memory of its Python process instead, which
takes no CPU away from the workers."""


class TrainReporter:
    """Reports through Ray Train from every worker (Train V2 expects all ranks to report)."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        if state is None or rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, os.path.join(tmp, "trial_state.pt"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def resume_state(self) -> dict[str, Any] | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as path:
            return torch.load(os.path.join(path, "trial_state.pt"), weights_only=True)


def worker_loop(loop_config: dict[str, Any]) -> None:
    import ray.train

    from medguna.study.description_sets import install_sets
    from medguna.study.runner import _TaggedReporter
    from medguna.study.space import is_paper_point
    from medguna.trial.loop import run_trial

    cfg = from_dict(TrialConfig, loop_config["base"])
    install_sets(loop_config.get("sets"), cfg.data.cache_dir, cfg.data.dataset)  # each worker's node
    params = loop_config["params"]
    cfg.method = apply_method_params(cfg.method, params)
    if not loop_config["use_gpu"]:
        cfg.runtime.cpu = True  # keeps accelerate multi-process on CPU (ACCELERATE_USE_CPU)
    rank = ray.train.get_context().get_world_rank()
    reporter = _TaggedReporter(TrainReporter(), {
        "study": loop_config["study"], PAPER_POINT: is_paper_point(params)})
    run_trial(cfg, reporter, log_dir=loop_config["log_dir"] if rank == 0 else None,
              params=loop_config["config"])


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
    params = method_params(config)
    if not use_gpu:
        os.environ["ACCELERATE_USE_CPU"] = "1"
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"base": base, "params": params, "config": dict(config), "study": study,
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
