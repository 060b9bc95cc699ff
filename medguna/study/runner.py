"""A MedUnA study: per dataset, one Ray Tune experiment whose trials Optuna proposes, then its
confirmation; run, resumed or extended by the same command.

What runs is the plan (medguna.study.plan); each experiment is built by medguna.study.experiment;
where results land is medguna.results' layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from medguna.config import to_dict
from medguna.results import STUDY_FILE
from medguna.study.confirm import run_confirmation
from medguna.study.errors import StudyFailed, StudyInterrupted
from medguna.study.files import is_uri, join, read_text, remove_tree, write_text
from medguna.study.plan import DatasetPlan, StudyPlan, banner, plan_study
from medguna.study.progress import fit_block
from medguna.study_config import StudyConfig

__all__ = ["REUSED_WORKER_ENV", "StudyFailed", "StudyInterrupted", "StudyPlan", "run_study", "write_study_json"]

# A reused worker waits for the previous trial's thread to end before the next trial; Ray's 2 s
# default fails the next trial ("Trainable runner reuse requires reset_config()") when a loaded
# machine takes longer to close the last trial's files.
REUSED_WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}


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
    log(fit_block(banner(plan)))
    _check_local_folders(plan)
    check_before_ray(plan, fresh=fresh, restart=restart, log=log)
    previous = None if fresh else read_study_record(plan, restart, read_text, log=log)
    decisions = decide(plan, previous, restart)  # a changed configuration stops here, before Ray
    lock = (study_lock(plan.study_dir, log=log, kind=cfg.storage.lock) if not is_uri(plan.storage)
            else contextlib.nullcontext())
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

    from medguna.study.autoscaler import read_autoscaler_config
    from medguna.study.concurrency import study_concurrency
    from medguna.study.lock import LOCK_FILE
    from medguna.study.storage import check_storage_for_cluster, expected_cluster_nodes

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
    # Read once: the storage check and the concurrency limit both plan for what the cluster may grow to.
    autoscaler_config = read_autoscaler_config(cfg.resources.autoscaling_config)
    check_storage_for_cluster(plan.storage, expected_cluster_nodes(autoscaler_config))
    concurrency = study_concurrency(cfg.resources, autoscaler_config)
    from medguna.study.resource_wait import cluster_can_run

    plan.resource_wait_s = cluster_can_run(cfg.resources, log)
    if fresh and not is_uri(plan.storage) and Path(plan.study_dir).exists():
        from medguna.study.fresh import clear_study_folder

        log(f"--fresh: removing the earlier results in {plan.study_dir}")
        clear_study_folder(plan.storage, cfg.study.name, keep=(LOCK_FILE,))
    elif fresh and is_uri(plan.storage) and remove_tree(plan.study_dir):  # a bucket prefix
        log(f"--fresh: removed the earlier results in {plan.study_dir}")
    write_study_json(plan, previous, restart)

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
    """Run one dataset's experiment to its end, then its confirmation and baseline arm; False if
    every one of its trials failed."""
    from medguna.study.baseline import run_baseline
    from medguna.study.error_text import first_error_message
    from medguna.study.experiment import (
        build_trainable,
        fit,
        restored_tuner,
        search_tuner,
        write_hparams_config,
    )
    from medguna.study.optuna_storage import export_optuna
    from medguna.study.resume import raise_sample_target
    from medguna.study.tune_state import (
        all_failed,
        completed_samples,
        restorable,
        unfinished_trials,
        write_complete_marker,
    )

    cfg, exp_dir = plan.config, join(plan.study_dir, p.dataset)
    trainable = build_trainable(plan, p)
    if completed_samples(exp_dir, log) >= p.num_samples:
        log(f"[{p.dataset}] already complete in {exp_dir}: nothing rerun (use --fresh to start over)")
        run_confirmation(plan, p, trainable, None, concurrency, log, stop=stop, verbose=verbose)
        run_baseline(plan, p, trainable, concurrency, log, stop=stop, verbose=verbose)
        return True
    if restorable(exp_dir):
        earlier = raise_sample_target(exp_dir, p.num_samples)
        if earlier < p.num_samples:
            log(f"[{p.dataset}] extending from {earlier} to {p.num_samples} trials in {exp_dir}: "
                f"the earlier trials are kept, {p.num_samples - earlier} new ones run")
        else:
            log(f"[{p.dataset}] resuming the interrupted experiment in {exp_dir}; finished trials are kept")
        # Failed trials rerun only when asked, or when all of them failed (a broken setup, not a result).
        rerun = cfg.resources.rerun_failed or all_failed(exp_dir)
        if rerun:
            log(f"[{p.dataset}] failed trials rerun from their last checkpoint")
        tuner = restored_tuner(plan, p, trainable, resume_errored=rerun, verbose=verbose)
    else:
        log(f"[{p.dataset}] starting {p.num_samples} trials, at most {concurrency.limit} at once "
            f"(from {concurrency.reason})")
        if p.warm_note:
            log(f"[{p.dataset}] {p.warm_note}")
        tuner = search_tuner(plan, p, trainable, concurrency.limit, verbose)
    write_hparams_config(plan, p)
    results = fit(tuner, stop=stop, verbose=verbose)
    summary = export_optuna(plan, p, results)
    unfinished = unfinished_trials(exp_dir, results, p.num_samples)
    if unfinished:
        # Tune returns normally after Ctrl-C; the experiment state it saved is what resume reads.
        log(f"[{p.dataset}] interrupted: {p.num_samples - unfinished} of {p.num_samples} trials finished; "
            f"results so far are kept in {exp_dir}. Run the same command again to resume.")
        raise StudyInterrupted(p.dataset)
    if all_failed(exp_dir):
        error = first_error_message(r.error for r in results if r.error)
        log(f"[{p.dataset}] all {p.num_samples} trials failed, so it is not complete (first error: {error}). "
            "Fix the cause and run the same command again: these trials rerun.")
        return False
    write_complete_marker(exp_dir, {**summary, "num_samples": p.num_samples})
    log(f"[{p.dataset}] done: {summary['counts']}")
    run_confirmation(plan, p, trainable, results, concurrency, log, stop=stop, verbose=verbose)
    run_baseline(plan, p, trainable, concurrency, log, stop=stop, verbose=verbose)
    return True


def write_study_json(plan: StudyPlan, previous: dict[str, Any] | None, restart=()) -> None:
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
    write_text(join(plan.study_dir, STUDY_FILE), json.dumps(info, indent=2))
