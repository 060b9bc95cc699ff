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
from medguna.results import BASELINE_SUFFIX, VARIANT
from medguna.study.space import PAPER_POINT_VALUES

__all__ = ["BASELINE_PLAN_FILE", "BASELINE_SUFFIX", "baseline_point", "run_baseline"]
REFERENCE_VARIANT = "reference"  # method.variant of the reference implementation (medguna.config.VARIANTS)
BASELINE_PLAN_FILE = "baseline_plan.json"


def baseline_point(method, image_size: int, dataset: str) -> tuple[dict[str, Any] | None, str]:
    """The reference variant's Tune config at the paper's point, or None and why it cannot run."""
    values = {**to_dict(method), **PAPER_POINT_VALUES, VARIANT: REFERENCE_VARIANT}
    try:
        validate_method(apply_method_params(method, values), image_size)
    except ConfigError as err:
        return None, (f"baseline arm (reference variant at the paper's point) not run: the reference "
                      f"variant cannot express it at data.image_size={image_size}: {err}")
    return {**values, "dataset": dataset}, "baseline arm: the reference variant at the paper's point"


def run_baseline(plan, p, trainable, concurrency, log=print, *, stop, verbose: bool = False) -> None:
    """Run dataset plan `p`'s baseline arm as `<dataset>_baseline/` when the study asks for it;
    resumes like the confirmation and is skipped once complete. `concurrency`: the study's limit
    (medguna.study.concurrency)."""
    from medguna.study.confirm import confirmation_space
    from medguna.study.errors import StudyInterrupted
    from medguna.study.experiment import as_experiment, fit, fixed_points_tuner, restored_tuner
    from medguna.study.files import join, read_text, write_text
    from medguna.study.tune_state import (
        is_complete,
        restorable,
        unfinished_trials,
        write_complete_marker,
    )

    if not plan.config.search.baseline_reference_variant:
        return
    point, note = baseline_point(p.trial.method, p.trial.data.image_size, p.dataset)
    if point is None:
        log(f"[{p.dataset}] {note}")
        return
    exp_dir = join(plan.study_dir, p.dataset + BASELINE_SUFFIX)
    if is_complete(exp_dir):
        log(f"[{p.dataset}] baseline arm already complete in {exp_dir}")
        return
    points = [point]
    experiment = as_experiment(p, BASELINE_SUFFIX, len(points))
    if read_text(join(exp_dir, BASELINE_PLAN_FILE)) is not None and restorable(exp_dir):
        log(f"[{p.dataset}] resuming the interrupted baseline arm in {exp_dir}")
        tuner = restored_tuner(plan, experiment, trainable, resume_errored=True, verbose=verbose)
    else:
        write_text(join(exp_dir, BASELINE_PLAN_FILE), json.dumps({"points": points}, indent=2, default=str))
        log(f"[{p.dataset}] {note}: 1 trial")
        tuner = fixed_points_tuner(plan, experiment, trainable, points, confirmation_space(points),
                                   concurrency.limit, verbose=verbose)
    results = fit(tuner, stop=stop, verbose=verbose)
    if unfinished_trials(exp_dir, results, len(points)):
        log(f"[{p.dataset}] baseline arm interrupted; run the same command again to resume it")
        raise StudyInterrupted(p.dataset + BASELINE_SUFFIX)
    failed = [str(r.error)[:300] for r in results if r.error]
    write_complete_marker(exp_dir, {"failed": failed})
    log(f"[{p.dataset}] baseline arm " + (f"failed: {failed[0]}" if failed else "done"))
