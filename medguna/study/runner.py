"""A MedUnA study: per dataset, one Ray Tune experiment whose trials Optuna proposes.

Where results land is medguna.results' layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medguna.atomic import write_bytes_atomic
from medguna.config import (
    StudyConfig,
    TrialConfig,
    apply_method_params,
    control_banner,
    from_dict,
    to_dict,
)
from medguna.data.shifts import acquisition_text, check_shift
from medguna.errors import ConfigError
from medguna.models.demo_encoder import encoder_description
from medguna.results import (
    COMPLETE_MARKER,
    OBJECTIVE_BEST_SO_FAR,
    PAPER_POINT,
    STUDY_FILE,
    TrialOutcome,
    method_params,
    outcome_of,
    trial_dirname,
)
from medguna.study.baseline import run_baseline
from medguna.study.confirm import run_confirmation
from medguna.study.space import define_by_run, fixed_params, is_paper_point, paper_point
from medguna.study.warm_start import enqueue_order, warm_points

TUNE_METRIC = OBJECTIVE_BEST_SO_FAR  # reported every epoch


# A reused worker waits for the previous trial's thread to end before the next trial; Ray's 2 s
# default fails the next trial ("Trainable runner reuse requires reset_config()") when a loaded
# machine takes longer to close the last trial's files.
REUSED_WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}


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


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if "://" in base else str(Path(base, *parts))


def is_uri(path: str) -> bool:
    return "://" in path


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
    checkpoint, tokenizer = _checked_model_paths(cfg)
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


def _checked_model_paths(cfg: StudyConfig) -> tuple[str | None, str | None]:
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


def banner(plan: StudyPlan) -> str:
    cfg = plan.config
    r = cfg.resources
    lines = [f"medguna study '{cfg.study.name}'"
             + ("" if plan.budget == "real" else
                "  ** DEMONSTRATION: SYNTHETIC stand-ins and/or the demonstration encoder; "
                "numbers say nothing about real performance **")]
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
        _confirm_line(plan.datasets[0]),
        f"  resources  {r.cpus_per_trial:g} CPU + {r.gpus_per_trial:g} GPU per trial, Ray at {r.address}",
        f"  storage    {plan.study_dir}",
        f"  TensorBoard: tensorboard --logdir {shlex.quote(plan.study_dir)}",
    ]
    return "\n".join(lines)


def _confirm_line(p: DatasetPlan) -> str:
    if p.confirm_top <= 0 or p.confirm_seeds <= 0:
        return "  confirm    no confirmation stage (study.confirm_top=0)"
    return (f"  confirm    then the {p.confirm_top} best configuration(s) per dataset again with "
            f"{p.confirm_seeds} fresh seeds each (<dataset>_confirm/)")


# ---- the trainable (runs inside a Ray worker) ----

class TuneReporter:
    """Reports each epoch to Tune with a checkpoint, and resumes from Tune's last checkpoint."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        from ray import tune

        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, os.path.join(tmp, "trial_state.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    def resume_state(self) -> dict[str, Any] | None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as path:
            return torch.load(os.path.join(path, "trial_state.pt"), weights_only=True)


def medguna_trainable(config: dict[str, Any], *, base: dict[str, Any], study: str, code_version: str,
                      sets: dict[str, Any] | None = None) -> None:
    """Tune function trainable: the trial config plus this trial's sampled hyperparameters.

    `sets`: the sentences of the description sets the study checked, for this trial's node.
    """
    from ray import tune

    from medguna.study.description_sets import install_sets
    from medguna.study.failures import input_errors_not_retried
    from medguna.trial.loop import run_trial
    from medguna.versions import CODE_VERSION_ENV

    os.environ[CODE_VERSION_ENV] = code_version  # the driver's commit: nodes get the code without .git

    cfg = from_dict(TrialConfig, base)
    install_sets(sets, cfg.data.cache_dir, cfg.data.dataset)
    params = method_params(config)
    cfg.method = apply_method_params(cfg.method, params)
    reporter = _TaggedReporter(TuneReporter(), {
        "study": study, PAPER_POINT: is_paper_point(params)})
    trial_dir = tune.get_context().get_trial_dir()
    with input_errors_not_retried(trial_dir):
        run_trial(cfg, reporter, log_dir=trial_dir, params=config)


class _TaggedReporter:
    def __init__(self, inner, tags: dict[str, Any]) -> None:
        self.inner, self.tags = inner, tags

    def report(self, metrics, state=None):
        self.inner.report({**self.tags, **metrics}, state)

    def resume_state(self):
        return self.inner.resume_state()


# ---- running ----

def _trial_dirname(trial) -> str:
    """t<NNNN>_<trial id>: short (Ray's default embeds every parameter and breaks long paths),
    ordered by the searcher's trial number, which Tune puts first in the experiment tag."""
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    number = int(head) if head.isdigit() else 0
    return trial_dirname(number, trial.trial_id)


def _max_concurrent(cfg: StudyConfig) -> int:
    import ray

    r = cfg.resources
    if r.max_concurrent_trials:
        return r.max_concurrent_trials
    total = ray.cluster_resources()
    by_cpu = int(total.get("CPU", 1) // (r.cpus_per_trial * r.num_workers))
    if r.gpus_per_trial > 0:
        gpus = r.gpus_per_trial if not r.distributed else float(r.num_workers)
        return max(1, min(by_cpu, int(total.get("GPU", 0) // gpus)))
    return max(1, by_cpu)


# Without this Ray adds its TensorBoard logger, whose `ray/tune/<metric>` scalars repeat every
# number the trial writes itself under medguna's tags; its JSON and CSV loggers are passed explicitly.
NO_DEFAULT_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def _callbacks(plan: StudyPlan, p: DatasetPlan, verbose: bool) -> list:
    """Ray's result.json and progress.csv writers (not its TensorBoard logger: each trial writes its
    own events) and, unless verbose, medguna's display."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from medguna.study.confirm import CONFIRM_SUFFIX
    from medguna.study.optuna_storage import OptunaRecorder, study_name
    from medguna.study.progress import StudyProgress

    # p.dataset is `<dataset>_confirm` for the confirmation stage: its own study, the same database.
    dataset = p.dataset.removesuffix(CONFIRM_SUFFIX)
    recorder = OptunaRecorder(join(plan.study_dir, dataset), p.dataset,
                              study_name(plan.config.study.name, dataset, confirm=dataset != p.dataset),
                              plan.config.search.space, TUNE_METRIC, plan.config.runtime.objective,
                              p.trial.method.stage2_epochs)
    callbacks = [JsonLoggerCallback(), CSVLoggerCallback(), recorder]
    if plan.resource_wait_s is not None:
        from medguna.study.resource_wait import WaitForResources

        r = plan.config.resources
        callbacks.append(WaitForResources(plan.resource_wait_s, f"{r.gpus_per_trial:g} GPU(s) for one trial"))
    if not verbose:
        callbacks.append(StudyProgress(
            p.dataset, p.num_samples, list(plan.config.search.space), metric=TUNE_METRIC,
            objective=plan.config.runtime.objective, epochs=p.trial.method.stage2_epochs,
            cache_dir=p.trial.data.cache_dir))
    return callbacks


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


def _use_this_console(tuner, plan: StudyPlan, p: DatasetPlan, verbose: bool) -> None:
    """A restored Tuner brings back the callbacks and verbosity pickled when the experiment began
    (tuner.pkl); this run's --verbose choice replaces them. Ray 2.60 keeps that run config on
    the Tuner's local part, whose fit() reads it."""
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        return
    run_config = local.get_run_config()
    run_config.callbacks = _callbacks(plan, p, verbose)
    run_config.verbose = 1 if verbose else 0


def _write_hparams_config(plan: StudyPlan, p: DatasetPlan) -> None:
    """Declare the experiment's HParams once (searched dimensions first) beside its trials."""
    from medguna.study.tensorboard import CONFIG_EVENTS_FILE, hparams_config_event

    space = plan.config.search.space
    constants = {**to_dict(p.trial.method), **fixed_params(p.trial.method, space, dataset=p.dataset)}
    event = hparams_config_event(space, constants, plan.config.runtime.objective)
    _write_bytes(join(plan.study_dir, p.dataset, CONFIG_EVENTS_FILE), event)


def _make_tuner(plan: StudyPlan, p: DatasetPlan, trainable, max_concurrent: int, verbose: bool = False):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from medguna.study.searcher import StudySearch

    cfg = plan.config
    space = cfg.search.space
    constants = fixed_params(p.trial.method, space, dataset=p.dataset)
    point = paper_point(space) if cfg.search.enqueue_reference else None
    searcher = StudySearch(
        define_by_run(space, constants), metric=TUNE_METRIC, mode="max",
        points_to_evaluate=enqueue_order(point, p.warm_points), seed=cfg.search.sampler_seed,
        study_name=f"{cfg.study.name}-{p.dataset}",
    )
    scheduler = None
    if cfg.search.scheduler == "asha" and not cfg.resources.distributed:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=p.trial.method.stage2_epochs,
                                  grace_period=cfg.search.grace_period,
                                  reduction_factor=cfg.search.reduction_factor)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=TUNE_METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
            num_samples=p.num_samples, max_concurrent_trials=max_concurrent,
            # A Ray Train driver starts its own worker group per trial, so reusing it saves nothing.
            reuse_actors=cfg.resources.reuse_actors and not cfg.resources.distributed,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=_run_config(plan, p.dataset, callbacks=_callbacks(plan, p, verbose), verbose=verbose),
    )


def _run_config(plan: StudyPlan, name: str, *, callbacks=None, verbose: bool = False):
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=plan.study_dir,
        failure_config=tune.FailureConfig(max_failures=plan.config.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        # Trials write their own TensorBoard events and predictions; sync them into the storage path.
        sync_config=tune.SyncConfig(sync_artifacts=True),
        callbacks=callbacks,
        verbose=1 if verbose else 0,  # Ray's trial tables only on request (--verbose)
    )


def _trainable(plan: StudyPlan, p: DatasetPlan):
    from ray import tune

    from medguna.study.description_sets import sets_for_trials
    from medguna.versions import describe_code

    r = plan.config.resources
    base, study, code_version = to_dict(p.trial), plan.config.study.name, describe_code()
    sets = sets_for_trials(plan.description_sets, p.trial.data.cache_dir, p.dataset)
    if r.distributed:
        from medguna.study.distributed import DRIVER_RESOURCES, distributed_trainable

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


def run_study(cfg: StudyConfig, *, fresh: bool = False, restart: tuple[str, ...] | list[str] = (),
              log=print, verbose: bool = False) -> StudyPlan:
    """Run (or resume, or extend) every dataset's experiment of the study, then export and summarise.

    `restart` names datasets to start over (their earlier results are deleted, the others kept).

    verbose: Ray's own trial tables and log lines instead of medguna's progress display.

    Folders are checked and the study's lock taken before Ray starts, so a second driver on the
    same study, or an unwritable storage path, stops at once.
    """
    from medguna.study.guards import check_before_ray
    from medguna.study.interrupt import stop_on_interrupt
    from medguna.study.lock import study_lock
    from medguna.study.readback import read_study_record
    from medguna.study.resume import decide

    plan = plan_study(cfg)
    log(banner(plan))
    _check_local_folders(plan)
    check_before_ray(plan, fresh=fresh, restart=restart, log=log)
    previous = None if fresh else read_study_record(plan, restart, _read_text, log=log)
    decisions = decide(plan, previous, restart)  # a changed configuration stops here, before Ray
    lock = study_lock(plan.study_dir, log=log, kind=cfg.storage.lock) if not is_uri(plan.storage) else contextlib.nullcontext()
    with lock, stop_on_interrupt() as stop:
        try:
            _run_planned(plan, fresh=fresh, log=log, stop=stop, verbose=verbose, previous=previous,
                         decisions=decisions, restart=restart)
        except StudyInterrupted as interrupted:
            interrupted.exit_code = stop.exit_code  # 130 after Ctrl-C, 143 after SIGTERM
            raise
    return plan


def _check_local_folders(plan: StudyPlan) -> None:
    from medguna.folders import check_writable_folder

    if not is_uri(plan.storage):
        check_writable_folder(plan.storage, "storage.path")
    check_writable_folder(plan.config.storage.cache_dir, "storage.cache_dir")


def _run_planned(plan: StudyPlan, *, fresh: bool, log, stop, verbose: bool, previous, decisions,
                 restart) -> None:
    import ray

    from medguna.study.concurrency import study_concurrency
    from medguna.study.lock import LOCK_FILE
    from medguna.study.remote import remove_tree
    from medguna.study.storage import (
        check_storage_for_cluster,
        count_alive_nodes,
        expected_cluster_nodes,
    )

    cfg = plan.config
    # Ray reports usage statistics over the network unless told not to; medguna asks for no network.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name, value in REUSED_WORKER_ENV.items():  # workers of a local Ray inherit the driver's env
        os.environ.setdefault(name, value)
    from medguna.study.progress import quiet_libraries

    if not verbose:
        quiet_libraries()
    if not ray.is_initialized():
        address = cfg.resources.address
        ray.init(address=address if address != "local" else "local", include_dashboard=False,
                 log_to_driver=verbose, configure_logging=False,
                 runtime_env={"env_vars": dict(REUSED_WORKER_ENV)})
    stop.own_sigterm()
    autoscaling_config = cfg.resources.autoscaling_config
    check_storage_for_cluster(plan.storage, expected_cluster_nodes(autoscaling_config) if autoscaling_config
                              else count_alive_nodes())
    concurrency = study_concurrency(cfg.resources)
    from medguna.study.resource_wait import cluster_can_run

    plan.resource_wait_s = cluster_can_run(cfg.resources, log)
    if fresh and not is_uri(plan.storage) and Path(plan.study_dir).exists():
        from medguna.study.fresh import clear_study_folder

        log(f"--fresh: removing the earlier results in {plan.study_dir}")
        clear_study_folder(plan.storage, cfg.study.name, keep=(LOCK_FILE,))
    elif fresh and is_uri(plan.storage) and remove_tree(plan.study_dir):  # a bucket prefix
        log(f"--fresh: removed the earlier results in {plan.study_dir}")
    _write_study_json(plan, previous, restart)

    failed = []
    for p, decision in zip(plan.datasets, decisions, strict=True):
        if stop.requested:  # Ctrl-C while Ray started or between two experiments
            raise StudyInterrupted(p.dataset)
        exp_dir = join(plan.study_dir, p.dataset)
        if decision.action == "restart" and remove_tree(exp_dir):
            log(f"[{p.dataset}] --restart: removed its earlier results in {exp_dir}")
        if not _run_dataset(plan, p, concurrency, log, stop=stop, verbose=verbose):
            failed.append(p.dataset)
        if stop.requested:
            # Ctrl-C after this experiment's last trial: it is complete, the rest of the study waits.
            log(f"[{p.dataset}] stopped on request after this dataset; run the same command again to resume")
            raise StudyInterrupted(p.dataset)
    if failed:
        raise StudyFailed(failed)


def _run_dataset(plan: StudyPlan, p: DatasetPlan, concurrency, log, *, stop, verbose: bool = False) -> bool:
    """Run one dataset's experiment to its end; False if every one of its trials failed."""
    from ray import tune

    from medguna.study.error_text import first_error_message
    from medguna.study.resume import raise_sample_target

    cfg, exp_dir = plan.config, join(plan.study_dir, p.dataset)
    trainable = _trainable(plan, p)
    if _completed_samples(exp_dir, log) >= p.num_samples:
        log(f"[{p.dataset}] already complete in {exp_dir}: nothing rerun (use --fresh to start over)")
        run_confirmation(plan, p, trainable, None, log, stop=stop, verbose=verbose)
        run_baseline(plan, p, trainable, log, stop=stop, verbose=verbose)
        return True
    if _restorable(exp_dir):
        earlier = raise_sample_target(exp_dir, p.num_samples)
        if earlier < p.num_samples:
            log(f"[{p.dataset}] extending from {earlier} to {p.num_samples} trials in {exp_dir}: "
                f"the earlier trials are kept, {p.num_samples - earlier} new ones run")
        else:
            log(f"[{p.dataset}] resuming the interrupted experiment in {exp_dir}; finished trials are kept")
        # Failed trials rerun only when asked, or when all of them failed (a broken setup, not a result).
        rerun = cfg.resources.rerun_failed or _all_failed(exp_dir)
        if rerun:
            log(f"[{p.dataset}] failed trials rerun from their last checkpoint")
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_errored=rerun)
        _use_this_console(tuner, plan, p, verbose)
    else:
        log(f"[{p.dataset}] starting {p.num_samples} trials, at most {concurrency.limit} at once "
            f"(from {concurrency.reason})")
        if p.warm_note:
            log(f"[{p.dataset}] {p.warm_note}")
        tuner = _make_tuner(plan, p, trainable, concurrency.limit, verbose)
    _write_hparams_config(plan, p)
    results = fit(tuner, stop=stop, verbose=verbose)
    summary = export_optuna(plan, p, results)
    unfinished = _unfinished_trials(exp_dir, results, p.num_samples)
    if unfinished:
        # Tune returns normally after Ctrl-C; the experiment state it saved is what resume reads.
        log(f"[{p.dataset}] interrupted: {p.num_samples - unfinished} of {p.num_samples} trials finished; "
            f"results so far are kept in {exp_dir}. Run the same command again to resume.")
        raise StudyInterrupted(p.dataset)
    if _all_failed(exp_dir):
        error = first_error_message(r.error for r in results if r.error)
        log(f"[{p.dataset}] all {p.num_samples} trials failed, so it is not complete (first error: {error}). "
            "Fix the cause and run the same command again: these trials rerun.")
        return False
    _write_text(join(exp_dir, COMPLETE_MARKER), json.dumps({**summary, "num_samples": p.num_samples}, indent=2))
    log(f"[{p.dataset}] done: {summary['counts']}")
    run_confirmation(plan, p, trainable, results, log, stop=stop, verbose=verbose)
    run_baseline(plan, p, trainable, log, stop=stop, verbose=verbose)
    return True


def _completed_samples(exp_dir: str, log=print) -> int:
    """The number of trials the dataset's completion marker covers; 0 without a marker (or an
    unreadable one, which resuming rebuilds)."""
    from medguna.study.readback import completed_samples

    return completed_samples(_read_text, join(exp_dir, COMPLETE_MARKER), log)


def _all_failed(exp_dir: str) -> bool:
    statuses = saved_trial_statuses(exp_dir)
    return bool(statuses) and all(status == "ERROR" for status in statuses)


class StudyFailed(Exception):
    """Every trial of some dataset failed: the study is not complete (a broken setup, not a result)."""

    def __init__(self, datasets: list[str]) -> None:
        super().__init__(f"every trial failed on {', '.join(datasets)}")
        self.datasets = datasets


class StudyInterrupted(Exception):
    """The study stopped before every trial of a dataset finished (Ctrl-C, SIGTERM, lost driver)."""

    exit_code = 130


FINISHED_STATUSES = ("TERMINATED", "ERROR")


def _unfinished_trials(exp_dir: str, results, num_samples: int) -> int:
    """Trials that must still run: read from the experiment state Tune saved, which is what resume
    reads. The in-memory statuses are not enough: a trial running when Ctrl-C arrived can show as
    TERMINATED there while its saved status is RUNNING, and the study would be marked complete."""
    statuses = saved_trial_statuses(exp_dir)
    if statuses is None:
        statuses = [t.status for t in results._experiment_analysis.trials]
    done = sum(1 for status in statuses if status in FINISHED_STATUSES)
    return max(num_samples - done, 0)


def saved_trial_statuses(exp_dir: str) -> list[str] | None:
    """Each trial's status in the newest experiment_state-*.json, or None if there is none."""
    trials = saved_trials(exp_dir)
    return None if trials is None else [t["status"] for t in trials]


def saved_trials(exp_dir: str) -> list[dict[str, Any]] | None:
    """Each trial's saved record (status, trial_id, relative_logdir...) in the newest
    experiment_state-*.json, which is what resume reads; None if there is none."""
    states = _experiment_states(exp_dir)
    if not states:
        return None
    fs, _ = _filesystem(exp_dir)
    with fs.open_input_stream(states[-1]) as f:
        state = json.loads(f.read().decode())
    # trial_data: [trial JSON, runtime metadata JSON] per trial (Ray 2.60's layout).
    return [json.loads(entry[0]) for entry in state.get("trial_data", [])]


def _restorable(exp_dir: str) -> bool:
    """Tune can resume only once it has written both tuner.pkl and an experiment state."""
    from ray import tune

    return tune.Tuner.can_restore(exp_dir) and bool(_experiment_states(exp_dir))


def _experiment_states(exp_dir: str) -> list[str]:
    """The experiment_state-<time>.json files Tune wrote in exp_dir, oldest first."""
    import pyarrow.fs as pafs

    fs, inner = _filesystem(exp_dir)
    entries = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(e.path for e in entries
                  if Path(e.path).name.startswith("experiment_state-") and e.path.endswith(".json"))


def export_optuna(plan: StudyPlan, p: DatasetPlan, results) -> dict[str, Any]:
    """Complete <experiment>/optuna.db from Tune's results: the live database the study wrote as its
    trials ran (medguna.study.optuna_storage) gains only what it lacks, never replaced."""
    from medguna.study.optuna_storage import study_name, sync_results

    name = study_name(plan.config.study.name, p.dataset)
    counts = dict.fromkeys(TrialOutcome, 0)
    for result in results:
        counts[outcome_of(result.metrics, failed=result.error is not None,
                          epochs=p.trial.method.stage2_epochs)] += 1
    # Only what Tune saved as finished: a trial stopped by Ctrl-C runs again on resume.
    saved = saved_trials(join(plan.study_dir, p.dataset))
    finished = None if saved is None else {t["trial_id"] for t in saved if t.get("status") in FINISHED_STATUSES}
    added = sync_results(join(plan.study_dir, p.dataset), p.dataset, name, plan.config.search.space,
                         results, TUNE_METRIC, p.trial.method.stage2_epochs, finished)
    return {"optuna_study": name, "counts": {str(k): n for k, n in counts.items()},
            "optuna_trials_added_at_end": added,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def _write_study_json(plan: StudyPlan, previous: dict[str, Any] | None, restart=()) -> None:
    """study.json: written whole for a new study. For a study run again, what the kept results were
    made with stays (the first configuration, and per dataset the record that resume compares
    against); datasets started now get their own record, extended ones their new trial count, and
    every run is listed with the code that ran it."""
    from medguna.study.resume import dataset_record
    from medguna.versions import describe_code, git_state, library_versions

    cfg = plan.config
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    versions = {"code_version": describe_code(), **git_state(), **library_versions()}
    info = previous or {
        "study": cfg.study.name, "datasets": [], "objective": cfg.runtime.objective,
        "mode": "max", "budget": plan.budget, "data_source": {},
        "encoder": cfg.model.encoder, "checkpoint": cfg.model.builtin or cfg.model.checkpoint,
        "search_space": cfg.search.space, "method": dataclasses.asdict(plan.datasets[0].trial.method),
        "description_sets": plan.description_sets,  # what `set:NAME` meant: generator and hashes
        "created": now, **versions,
        "config": to_dict(cfg),  # everything composed, so a study can be rerun from this file alone
    }
    records = info.setdefault("dataset_records", {})
    for p in plan.datasets:
        kept = records.get(p.dataset)
        if kept is None or p.dataset in restart:
            records[p.dataset] = dataset_record(plan, p)
        else:
            kept["num_samples"] = max(int(kept.get("num_samples", 0)), p.num_samples)
        if p.dataset not in info["datasets"]:
            info["datasets"].append(p.dataset)
        info["data_source"][p.dataset] = p.data_source
    info.setdefault("runs", []).append({"started": now, **versions,
                                        "num_samples": {p.dataset: p.num_samples for p in plan.datasets}})
    _write_text(join(plan.study_dir, STUDY_FILE), json.dumps(info, indent=2))


def _filesystem(path: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(path) if is_uri(path) else (pafs.LocalFileSystem(), path)


def _read_text(path: str) -> str | None:
    import pyarrow.fs as pafs

    fs, inner = _filesystem(path)
    if fs.get_file_info(inner).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(inner) as f:
        return f.read().decode()


def _write_text(path: str, text: str) -> None:
    _write_bytes(path, text.encode())


def _write_bytes(path: str, data: bytes) -> None:
    if not is_uri(path):  # an object store publishes a whole object at once; a local file needs the rename
        write_bytes_atomic(path, data)
        return
    fs, inner = _filesystem(path)
    fs.create_dir(inner.rsplit("/", 1)[0] if is_uri(path) else str(Path(inner).parent), recursive=True)
    with fs.open_output_stream(inner) as f:
        f.write(data)
