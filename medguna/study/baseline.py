"""Baseline arm: the reference variant (method=reference) at the paper's point, beside the search.

The ★ trial of every search is the paper's hyperparameters run in the study's own variant (medguna's
corrected pipeline by default). `search.baseline_reference_variant=true` adds, per dataset after its
search, one run of the reference variant itself at the paper's point (the study's budget and seed,
`method.variant=reference`) as the experiment `<dataset>_baseline/`: one full-budget trial, no
sampler. The analysis lists it in the dataset's leaderboard, unranked and labelled, and compares the
validation-selected trial with it on the same test images.

The reference variant inserts prompts as the reference does, so the paper's prompt length must fill
a square grid at the study's image size; where it cannot, the arm is not run and the log says why.
"""

from __future__ import annotations

import json
from typing import Any

from medguna.config import apply_method_params, to_dict, validate_method
from medguna.errors import ConfigError
from medguna.study.space import PAPER_POINT_VALUES

BASELINE_SUFFIX = "_baseline"
REFERENCE_VARIANT = "reference"  # method.variant of the reference implementation (medguna.config.VARIANTS)
BASELINE_PLAN_FILE = "baseline_plan.json"


def baseline_point(method, image_size: int, dataset: str) -> tuple[dict[str, Any] | None, str]:
    """The reference variant's Tune config at the paper's point, or None and why it cannot run."""
    values = {**to_dict(method), **PAPER_POINT_VALUES, "variant": REFERENCE_VARIANT}
    try:
        validate_method(apply_method_params(method, values), image_size)
    except ConfigError as err:
        return None, (f"baseline arm (reference variant at the paper's point) not run: the reference "
                      f"variant cannot express it at data.image_size={image_size}: {err}")
    return {**values, "dataset": dataset}, "baseline arm: the reference variant at the paper's point"


def run_baseline(plan, p, trainable, log=print, *, stop, verbose: bool = False) -> None:
    """Run dataset plan `p`'s baseline arm as `<dataset>_baseline/` when the study asks for it;
    resumes like the confirmation and is skipped once complete."""
    from ray import tune

    from medguna.study.confirm import as_experiment, fixed_points_tuner
    from medguna.study.runner import (
        COMPLETE_MARKER,
        StudyInterrupted,
        _callbacks,
        _read_text,
        _restorable,
        _unfinished_trials,
        _use_this_console,
        _write_text,
        fit,
        join,
    )

    if not plan.config.search.baseline_reference_variant:
        return
    point, note = baseline_point(p.trial.method, p.trial.data.image_size, p.dataset)
    if point is None:
        log(f"[{p.dataset}] {note}")
        return
    exp_dir = join(plan.study_dir, p.dataset + BASELINE_SUFFIX)
    if _read_text(join(exp_dir, COMPLETE_MARKER)) is not None:
        log(f"[{p.dataset}] baseline arm already complete in {exp_dir}")
        return
    points = [point]
    experiment = as_experiment(p, BASELINE_SUFFIX, points)
    if _read_text(join(exp_dir, BASELINE_PLAN_FILE)) is not None and _restorable(exp_dir):
        log(f"[{p.dataset}] resuming the interrupted baseline arm in {exp_dir}")
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_errored=True)
        _use_this_console(tuner, plan, experiment, verbose)
    else:
        _write_text(join(exp_dir, BASELINE_PLAN_FILE), json.dumps({"points": points}, indent=2, default=str))
        log(f"[{p.dataset}] {note}: 1 trial")
        tuner = fixed_points_tuner(plan, p, trainable, points, BASELINE_SUFFIX,
                                   callbacks=_callbacks(plan, experiment, verbose), verbose=verbose)
    results = fit(tuner, stop=stop, verbose=verbose)
    if _unfinished_trials(exp_dir, results, len(points)):
        log(f"[{p.dataset}] baseline arm interrupted; run the same command again to resume it")
        raise StudyInterrupted(p.dataset + BASELINE_SUFFIX)
    failed = [str(r.error)[:300] for r in results if r.error]
    _write_text(join(exp_dir, COMPLETE_MARKER), json.dumps({"failed": failed}, indent=2))
    log(f"[{p.dataset}] baseline arm " + (f"failed: {failed[0]}" if failed else "done"))
