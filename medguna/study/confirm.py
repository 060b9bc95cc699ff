"""Confirmation stage: rerun a finished experiment's best configurations with fresh seeds.

A search ranks configurations by one run each, all with the same `method.seed`; a winner by a point
may be seed luck. Per dataset, the K best distinct configurations of the search (by the objective
Tune ranked them with, completed trials only) each run again with N seeds
`method.seed + 1 ... method.seed + N`, as a second Ray Tune experiment `<dataset>_confirm/` in the
study folder, on the same cluster. The analysis reads it as the "confirmed leaderboard" (mean and
interval over seeds) and the seeds table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from medguna.results import (
    CONFIRM_SUFFIX,
    METHOD_PARAMS,
    OBJECTIVE_SELECTED,
    is_final_row,
    outcome_of,
    upgrade_row,
)
from medguna.study.files import join, read_text, write_text
from medguna.study.space import best_distinct


@dataclass(frozen=True)
class ConfirmPlan:
    top: int  # K configurations per dataset
    seeds: list[int]  # the N fresh seeds each of them runs with


def confirm_plan(top: int, num_seeds: int, base_seed: int) -> ConfirmPlan | None:
    """None when the study asks for no confirmation (K or N is 0)."""
    if top <= 0 or num_seeds <= 0:
        return None
    return ConfirmPlan(top, [base_seed + i for i in range(1, num_seeds + 1)])


def _configuration(config: dict[str, Any]) -> dict[str, Any]:
    """The method hyperparameters of a trial's config, without its seed."""
    return {k: v for k, v in config.items() if k in METHOD_PARAMS and k != "seed"}


def best_configurations(results: list[tuple[dict, dict]], top: int) -> list[dict[str, Any]]:
    """The `top` best distinct configurations among (last row, config) of completed trials, ranked
    by the objective of their selected epoch."""
    ranked = []
    for metrics, config in results:
        row = upgrade_row(metrics or {})
        value = row.get(OBJECTIVE_SELECTED)
        if not is_final_row(row) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        ranked.append((float(value), _configuration(config or {})))
    return best_distinct(ranked, top)[0]  # ties keep Tune's trial order


def confirmation_points(configurations: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """One Tune config per (configuration, seed), configuration-major."""
    return [{**configuration, "seed": seed} for configuration in configurations for seed in seeds]


def confirmation_space(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A Tune param_space holding every point: a key the points vary is a choice of their values.

    Tune checks each preset point against the space and warns where a value is not in it, so a
    space of constants (the first point) warned once per other seed and configuration."""
    from ray import tune

    space: dict[str, Any] = {}
    for key in points[0]:
        values = list(dict.fromkeys(point[key] for point in points))
        space[key] = values[0] if len(values) == 1 else tune.choice(values)
    return space


CONFIRM_PLAN_FILE = "confirm_plan.json"  # the points of a confirmation, written before it starts


def run_confirmation(plan, p, trainable, search_results, concurrency, log=print, *, stop,
                     verbose: bool = False) -> None:
    """Rerun dataset plan `p`'s best configurations with fresh seeds as `<dataset>_confirm/`;
    resumes like the search, shows its progress and stops on Ctrl-C as the search does, and is
    skipped once complete. `search_results`: the search's Tune results, or None to read them back
    from its experiment folder. `concurrency`: the study's limit (medguna.study.concurrency), the
    same as the search's, so an autoscaling cluster grows for the confirmation too."""
    from ray import tune

    from medguna.json_records import parse_json_record
    from medguna.study.errors import StudyInterrupted
    from medguna.study.experiment import as_experiment, fit, fixed_points_tuner, restored_tuner
    from medguna.study.readback import UnreadableRecord
    from medguna.study.tune_state import (
        is_complete,
        restorable,
        unfinished_trials,
        write_complete_marker,
    )

    confirm = confirm_plan(p.confirm_top, p.confirm_seeds, p.trial.method.seed)
    if confirm is None:
        return
    exp_dir = join(plan.study_dir, p.dataset + CONFIRM_SUFFIX)
    if is_complete(exp_dir):
        log(f"[{p.dataset}] confirmation already complete in {exp_dir}")
        return
    saved = read_text(join(exp_dir, CONFIRM_PLAN_FILE))
    if saved is not None and restorable(exp_dir):
        points = parse_json_record(saved, join(exp_dir, CONFIRM_PLAN_FILE), (
            f"it lists the configurations this confirmation reruns: delete {exp_dir} to make the "
            "confirmation again from the search's results"), error=UnreadableRecord).get("points")
        log(f"[{p.dataset}] resuming the interrupted confirmation in {exp_dir}")
        tuner = restored_tuner(plan, as_experiment(p, CONFIRM_SUFFIX, len(points)), trainable,
                               resume_errored=True, verbose=verbose)
    else:
        if search_results is None:
            search_results = tune.Tuner.restore(join(plan.study_dir, p.dataset), trainable=trainable).get_results()
        configurations = best_configurations([(r.metrics, r.config) for r in search_results], confirm.top)
        if not configurations:
            log(f"[{p.dataset}] no completed trial to confirm")
            return
        points = [{**point, "dataset": p.dataset} for point in confirmation_points(configurations, confirm.seeds)]
        write_text(join(exp_dir, CONFIRM_PLAN_FILE),
                   json.dumps({"seeds": confirm.seeds, "points": points}, indent=2, default=str))
        log(f"[{p.dataset}] confirming the {len(configurations)} best configuration(s) with seeds "
            f"{confirm.seeds}: {len(points)} trials, at most {concurrency.limit} at once "
            f"(from {concurrency.reason})")
        tuner = fixed_points_tuner(plan, as_experiment(p, CONFIRM_SUFFIX, len(points)), trainable, points,
                                   confirmation_space(points), concurrency.limit, verbose=verbose)
    results = fit(tuner, stop=stop, verbose=verbose)
    if unfinished_trials(exp_dir, results, len(points)):
        log(f"[{p.dataset}] confirmation interrupted; run the same command again to resume it")
        raise StudyInterrupted(p.dataset + CONFIRM_SUFFIX)
    summary = _summary(results, p)
    write_complete_marker(exp_dir, summary)
    log(f"[{p.dataset}] confirmation done: {summary['counts']}")


def _summary(results, p) -> dict[str, Any]:
    import datetime as dt

    counts: dict[str, int] = {}
    for result in results:
        outcome = outcome_of(result.metrics, failed=result.error is not None, epochs=p.trial.method.stage2_epochs)
        counts[outcome.value] = counts.get(outcome.value, 0) + 1
    return {"counts": counts, "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
