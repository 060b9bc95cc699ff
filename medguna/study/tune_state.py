"""What Tune saved of an experiment, read as resume reads it, and the study's completion marker.

The in-memory results of `Tuner.fit()` are not enough to tell whether an experiment finished: a
trial running when Ctrl-C arrived can show as TERMINATED there while its saved status is RUNNING.
"""

from __future__ import annotations

import json
from typing import Any

from medguna.results import COMPLETE_MARKER
from medguna.study.files import join, list_names, read_text, write_text

FINISHED_STATUSES = ("TERMINATED", "ERROR")


def experiment_states(exp_dir: str) -> list[str]:
    """The experiment_state-<time>.json files Tune wrote in exp_dir, oldest first."""
    return [join(exp_dir, name) for name in list_names(exp_dir)
            if name.startswith("experiment_state-") and name.endswith(".json")]


def saved_trials(exp_dir: str) -> list[dict[str, Any]] | None:
    """Each trial's saved record (status, trial_id, relative_logdir...) in the newest
    experiment_state-*.json, which is what resume reads; None if there is none."""
    states = experiment_states(exp_dir)
    if not states:
        return None
    state = json.loads(read_text(states[-1]) or "{}")
    # trial_data: [trial JSON, runtime metadata JSON] per trial (Ray 2.60's layout).
    return [json.loads(entry[0]) for entry in state.get("trial_data", [])]


def saved_trial_statuses(exp_dir: str) -> list[str] | None:
    """Each trial's status in the newest experiment_state-*.json, or None if there is none."""
    trials = saved_trials(exp_dir)
    return None if trials is None else [t["status"] for t in trials]


def restorable(exp_dir: str) -> bool:
    """Tune can resume only once it has written both tuner.pkl and an experiment state."""
    from ray import tune

    return tune.Tuner.can_restore(exp_dir) and bool(experiment_states(exp_dir))


def unfinished_trials(exp_dir: str, results, num_samples: int) -> int:
    """Trials that must still run, read from the experiment state Tune saved (what resume reads);
    from `results` (a ResultGrid) only when Tune saved none."""
    statuses = saved_trial_statuses(exp_dir)
    if statuses is None:
        statuses = [t.status for t in results._experiment_analysis.trials]
    done = sum(1 for status in statuses if status in FINISHED_STATUSES)
    return max(num_samples - done, 0)


def all_failed(exp_dir: str) -> bool:
    statuses = saved_trial_statuses(exp_dir)
    return bool(statuses) and all(status == "ERROR" for status in statuses)


def completed_samples(exp_dir: str, log=print) -> int:
    """The number of trials the experiment's completion marker covers; 0 without a marker (or an
    unreadable one, which resuming rebuilds)."""
    from medguna.study.readback import completed_samples as marker_samples

    return marker_samples(read_text, join(exp_dir, COMPLETE_MARKER), log)


def write_complete_marker(exp_dir: str, summary: dict[str, Any]) -> None:
    write_text(join(exp_dir, COMPLETE_MARKER), json.dumps(summary, indent=2))


def is_complete(exp_dir: str) -> bool:
    return read_text(join(exp_dir, COMPLETE_MARKER)) is not None
