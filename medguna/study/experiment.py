"""One dataset's Ray Tune experiment, built the same way for the search and the confirmation stage:
the trainable, the run config (storage, retries, checkpoints, TensorBoard, medguna's console), the
trial folder names and the concurrency limit (medguna.study.concurrency, computed once per study),
and how it is fitted. The search adds Optuna's sampler and ASHA; the confirmation runs its preset
points once each.
"""

from __future__ import annotations

from typing import Any

from medguna.config import to_dict
from medguna.results import CONFIRM_SUFFIX, OBJECTIVE_BEST_SO_FAR, trial_dirname
from medguna.study.files import join, write_bytes
from medguna.study.plan import DatasetPlan, StudyPlan
from medguna.study.space import define_by_run, fixed_params, reference_point
from medguna.study.warm_start import enqueue_order


def trial_folder(trial) -> str:
    """t<NNNN>_<trial id>, numbered by the searcher's trial number, which Tune puts first in the
    experiment tag."""
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return trial_dirname(int(head) if head.isdigit() else 0, trial.trial_id)


def build_trainable(plan: StudyPlan, p: DatasetPlan):
    """The trainable of dataset plan `p`'s trials, with the resources each reserves."""
    from ray import tune

    from medguna.study.description_sets import sets_for_trials
    from medguna.study.trainable import DRIVER_RESOURCES, distributed_trainable, medguna_trainable
    from medguna.versions import describe_code

    r = plan.config.resources
    base, study, code_version = to_dict(p.trial), plan.config.study.name, describe_code()
    sets = sets_for_trials(plan.description_sets, p.trial.data.cache_dir, p.dataset)
    if r.distributed:
        fn = tune.with_parameters(
            distributed_trainable, base=base, study=study, sets=sets, num_workers=r.num_workers,
            use_gpu=r.gpus_per_trial > 1, cpus_per_worker=r.cpus_per_trial,
            storage_path=join(plan.study_dir, "_train"), max_failures=r.max_failures,
            code_version=code_version)
        # The driver only waits on its TorchTrainer, whose workers hold the CPUs and GPUs.
        return tune.with_resources(fn, DRIVER_RESOURCES)
    fn = tune.with_parameters(medguna_trainable, base=base, study=study, code_version=code_version,
                              sets=sets)
    return tune.with_resources(fn, {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})


def as_confirmation(p: DatasetPlan, num_points: int) -> DatasetPlan:
    """Dataset plan `p` as its confirmation experiment names and counts it."""
    import dataclasses

    return dataclasses.replace(p, dataset=p.dataset + CONFIRM_SUFFIX, num_samples=num_points)


def callbacks(plan: StudyPlan, p: DatasetPlan, verbose: bool) -> list:
    """Ray's TensorBoard scalars without its HParams entry, and (unless verbose) medguna's display."""
    from medguna.study.progress import StudyProgress
    from medguna.study.tensorboard import ScalarsOnlyTBXLogger

    found = [ScalarsOnlyTBXLogger()]
    if not verbose:
        found.append(StudyProgress(
            p.dataset, p.num_samples, list(plan.config.search.space), metric=OBJECTIVE_BEST_SO_FAR,
            objective=plan.config.runtime.objective, epochs=p.trial.method.stage2_epochs))
    return found


def run_config(plan: StudyPlan, p: DatasetPlan, *, verbose: bool = False):
    """`p.dataset` names the experiment's folder (<dataset> or <dataset>_confirm)."""
    from ray import tune

    return tune.RunConfig(
        name=p.dataset, storage_path=plan.study_dir,
        failure_config=tune.FailureConfig(max_failures=plan.config.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        # Trials write their own TensorBoard events and predictions; sync them into the storage path.
        sync_config=tune.SyncConfig(sync_artifacts=True),
        callbacks=callbacks(plan, p, verbose),
        verbose=1 if verbose else 0,  # Ray's trial tables only on request (--verbose)
    )


def _tune_config(plan: StudyPlan, num_samples: int, **kwargs: Any):
    from ray import tune

    r = plan.config.resources
    return tune.TuneConfig(
        num_samples=num_samples,
        # A Ray Train driver starts its own worker group per trial, so reusing it saves nothing.
        reuse_actors=r.reuse_actors and not r.distributed,
        trial_dirname_creator=trial_folder, **kwargs)


def search_tuner(plan: StudyPlan, p: DatasetPlan, trainable, max_concurrent: int, verbose: bool = False):
    """The search: Optuna proposes (the paper's point and warm-start points first), ASHA stops."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from medguna.study.searcher import StudySearch

    cfg = plan.config
    space = cfg.search.space
    constants = fixed_params(p.trial.method, space, dataset=p.dataset)
    point = reference_point(space) if cfg.search.enqueue_reference else None
    searcher = StudySearch(
        define_by_run(space, constants), metric=OBJECTIVE_BEST_SO_FAR, mode="max",
        points_to_evaluate=enqueue_order(point, p.warm_points), seed=cfg.search.sampler_seed,
        study_name=f"{cfg.study.name}-{p.dataset}", export_dir=join(plan.study_dir, p.dataset),
    )
    scheduler = None
    if cfg.search.scheduler == "asha" and not cfg.resources.distributed:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=p.trial.method.stage2_epochs,
                                  grace_period=cfg.search.grace_period,
                                  reduction_factor=cfg.search.reduction_factor)
    return tune.Tuner(
        trainable,
        tune_config=_tune_config(plan, p.num_samples, metric=OBJECTIVE_BEST_SO_FAR, mode="max",
                                 search_alg=searcher, scheduler=scheduler, max_concurrent_trials=max_concurrent),
        run_config=run_config(plan, p, verbose=verbose),
    )


def confirmation_tuner(plan: StudyPlan, p: DatasetPlan, trainable, points: list[dict[str, Any]],
                       param_space: dict[str, Any], max_concurrent: int, verbose: bool = False):
    """The confirmation (`p` as as_confirmation gives it): every (configuration, seed) point once,
    at full budget: no sampler, no early stopping. `param_space` holds every point."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=_tune_config(plan, len(points), search_alg=BasicVariantGenerator(
            points_to_evaluate=points, max_concurrent=max_concurrent)),
        run_config=run_config(plan, p, verbose=verbose),
    )


def restored_tuner(plan: StudyPlan, p: DatasetPlan, trainable, *, resume_errored: bool, verbose: bool):
    """The experiment in `p`'s folder, restored to go on where Tune stopped.

    A restored Tuner brings back the callbacks and verbosity pickled when the experiment began
    (tuner.pkl); this run's --verbose choice replaces them. Ray 2.60 keeps that run config on
    the Tuner's local part, whose fit() reads it."""
    from ray import tune

    tuner = tune.Tuner.restore(join(plan.study_dir, p.dataset), trainable=trainable, resume_errored=resume_errored)
    local = getattr(tuner, "_local_tuner", None)
    if local is not None:
        config = local.get_run_config()
        config.callbacks = callbacks(plan, p, verbose)
        config.verbose = 1 if verbose else 0
    return tuner


def write_hparams_config(plan: StudyPlan, p: DatasetPlan) -> None:
    """Declare the experiment's HParams once (searched dimensions first) beside its trials."""
    from medguna.study.tensorboard import CONFIG_EVENTS_FILE, hparams_config_event

    space = plan.config.search.space
    constants = {**to_dict(p.trial.method), **fixed_params(p.trial.method, space, dataset=p.dataset)}
    event = hparams_config_event(space, constants, plan.config.runtime.objective)
    write_bytes(join(plan.study_dir, p.dataset, CONFIG_EVENTS_FILE), event)


def fit(tuner, *, stop, verbose: bool):
    """`Tuner.fit()` as every experiment of a study (search or confirmation) runs it: medguna's
    console unless verbose, and a Ctrl-C forwarded to Tune as a graceful stop."""
    from medguna.study.progress import ray_console

    with ray_console(verbose), stop.fitting():
        return tuner.fit()
