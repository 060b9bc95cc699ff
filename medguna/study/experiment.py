"""One dataset's Ray Tune experiment, built the same way for the search, the confirmation stage and
the baseline arm: the trainable, the run config (storage, retries, checkpoints, result files, the
live Optuna record, medguna's console), the trial folder names and the concurrency limit
(medguna.study.concurrency, computed once per study), and how it is fitted. The search adds
Optuna's sampler and ASHA; the confirmation and the baseline arm run their preset points once each.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from medguna.config import to_dict
from medguna.results import CONFIRM_SUFFIX, OBJECTIVE_BEST_SO_FAR, trial_dirname
from medguna.study.files import join, write_bytes
from medguna.study.plan import DatasetPlan, StudyPlan
from medguna.study.space import define_by_run, fixed_params, paper_point
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


def as_experiment(p: DatasetPlan, suffix: str, num_points: int) -> DatasetPlan:
    """Dataset plan `p` as its `<dataset><suffix>` experiment (the confirmation, the baseline arm)
    names and counts it."""
    import dataclasses

    return dataclasses.replace(p, dataset=p.dataset + suffix, num_samples=num_points)


# Without this Ray adds its TensorBoard logger, whose `ray/tune/<metric>` scalars repeat every
# number the trial writes itself under medguna's tags; its JSON and CSV loggers are passed explicitly.
NO_DEFAULT_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def callbacks(plan: StudyPlan, p: DatasetPlan, verbose: bool) -> list:
    """Ray's result.json and progress.csv writers (not its TensorBoard logger: each trial writes its
    own events), the live Optuna record, the wait for an autoscaler's resources when the study
    waits for them, and (unless verbose) medguna's display."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from medguna.study.optuna_storage import OptunaRecorder, study_name
    from medguna.study.progress import StudyProgress

    # p.dataset is `<dataset>_confirm` for the confirmation stage: its own study, the same database.
    dataset = p.dataset.removesuffix(CONFIRM_SUFFIX)
    recorder = OptunaRecorder(join(plan.study_dir, dataset), p.dataset,
                              study_name(plan.config.study.name, dataset, confirm=dataset != p.dataset),
                              plan.config.search.space, OBJECTIVE_BEST_SO_FAR, plan.config.runtime.objective,
                              p.trial.method.stage2_epochs, fixed=to_dict(p.trial.method))
    found = [JsonLoggerCallback(), CSVLoggerCallback(), recorder]
    if plan.resource_wait_s is not None:
        from medguna.study.resource_wait import WaitForResources

        r = plan.config.resources
        found.append(WaitForResources(plan.resource_wait_s, f"{r.gpus_per_trial:g} GPU(s) for one trial"))
    if not verbose:
        found.append(StudyProgress(
            p.dataset, p.num_samples, list(plan.config.search.space), metric=OBJECTIVE_BEST_SO_FAR,
            objective=plan.config.runtime.objective, epochs=p.trial.method.stage2_epochs,
            cache_dir=p.trial.data.cache_dir))
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
    """The search: Optuna proposes (the paper's point and warm-start points first), ASHA stops
    (all but the paper's point, which completes: medguna.study.scheduler)."""
    from ray import tune

    from medguna.study.scheduler import PaperPointASHA
    from medguna.study.searcher import StudySearch

    cfg = plan.config
    space = cfg.search.space
    constants = fixed_params(p.trial.method, space, dataset=p.dataset)
    point = paper_point(space) if cfg.search.enqueue_reference else None
    searcher = StudySearch(
        define_by_run(space, constants), metric=OBJECTIVE_BEST_SO_FAR, mode="max",
        points_to_evaluate=enqueue_order(point, p.warm_points), seed=cfg.search.sampler_seed,
        study_name=f"{cfg.study.name}-{p.dataset}",
    )
    scheduler = None
    if cfg.search.scheduler == "asha" and not cfg.resources.distributed:
        scheduler = PaperPointASHA(time_attr="epoch", max_t=p.trial.method.stage2_epochs,
                                   grace_period=cfg.search.grace_period,
                                   reduction_factor=cfg.search.reduction_factor)
    return tune.Tuner(
        trainable,
        tune_config=_tune_config(plan, p.num_samples, metric=OBJECTIVE_BEST_SO_FAR, mode="max",
                                 search_alg=searcher, scheduler=scheduler, max_concurrent_trials=max_concurrent),
        run_config=run_config(plan, p, verbose=verbose),
    )


def fixed_points_tuner(plan: StudyPlan, p: DatasetPlan, trainable, points: list[dict[str, Any]],
                       param_space: dict[str, Any], max_concurrent: int, verbose: bool = False):
    """Every point once, at full budget, as experiment `p.dataset` (`p` as as_experiment gives it):
    no sampler, no early stopping (the confirmation's reruns, the baseline arm). `param_space`
    holds every point."""
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

    with ray_console(verbose), stop.fitting(), _without_default_loggers():
        return tuner.fit()


@contextlib.contextmanager
def _without_default_loggers():
    """Tune reads NO_DEFAULT_LOGGERS when fit() builds its callbacks; the process's value comes back after."""
    before = os.environ.get(NO_DEFAULT_LOGGERS)
    os.environ[NO_DEFAULT_LOGGERS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NO_DEFAULT_LOGGERS, None)
        else:
            os.environ[NO_DEFAULT_LOGGERS] = before
