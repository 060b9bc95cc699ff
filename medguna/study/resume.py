"""Running a study again: what each dataset's kept results were made with, and what to do now.

Tune's restore keeps an experiment as first launched, so a changed configuration would either be
ignored (the old search space, the old number of trials) or mix results of two configurations
under one name. Each dataset's configuration is recorded in study.json when its trials start; a
later run compares against it and, per dataset:
- resumes when nothing that shapes results changed (resources, storage and caches may change);
- extends when only the number of trials grew: the kept trials stay, exactly the new ones run;
- refuses, naming each changed key with its old and new value, when anything else changed. The way
  out is the earlier values, `--restart <dataset>` (start that dataset over, keeping the others),
  `--fresh` (the whole study), or another study.name.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from medguna.config import to_dict
from medguna.errors import ConfigError
from medguna.study.inputs import changed_inputs

# Settings that do not change what a trial computes: changing them between runs is a resume.
NOT_SHAPING_RESULTS = ("data.cache_dir", "runtime.eval_batch_size", "runtime.caches", "runtime.log_every_steps",
                       "runtime.compile_student", "runtime.profile_steps")
SEARCH_KEYS = ("space", "sampler_seed", "enqueue_reference", "scheduler", "grace_period", "reduction_factor")


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_short(self.old)} -> {_short(self.new)}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class InputChange:
    """A file behind an unchanged value changed (medguna.study.inputs)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class DatasetDecision:
    dataset: str
    action: str  # "start" | "resume" | "extend" | "restart"
    changes: list[Change] = dataclasses.field(default_factory=list)
    kept_samples: int | None = None  # the trials the earlier run asked for


def dataset_record(plan, p) -> dict[str, Any]:
    """What study.json keeps about one dataset: everything that shapes its trials' results."""
    trial = to_dict(p.trial)
    search = to_dict(plan.config.search)
    shaping = {"trial": trial, "search": {k: search[k] for k in SEARCH_KEYS}}
    for dotted in NOT_SHAPING_RESULTS:
        section, key = dotted.split(".")
        shaping["trial"][section].pop(key, None)
    record = {"shaping": shaping, "num_samples": p.num_samples, "budget": plan.budget}
    inputs = getattr(plan, "inputs", {}).get(p.dataset)
    if inputs:
        record["inputs"] = inputs  # content hashes of the files behind the values (medguna.study.inputs)
    return record


def changes_between(old: Any, new: Any, prefix: str = "") -> list[Change]:
    """Every leaf that differs between two nested dicts, as dotted keys (Hydra's override names)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += changes_between(old.get(key), new.get(key), f"{prefix}{key}." if prefix or key else "")
        return found
    return [] if old == new else [Change(prefix.rstrip("."), old, new)]


def _override_name(key: str) -> str:
    """trial.method.entropy_weight -> method.entropy_weight; search.space.x -> search.space.x."""
    for head in ("trial.data.", "trial."):
        if key.startswith(head):
            return ("data." if head == "trial.data." else "") + key[len(head):]
    return key


def decide(plan, previous: dict[str, Any] | None, restart: list[str] | tuple[str, ...] = ()) -> list[DatasetDecision]:
    """Per dataset of `plan`, what this run does, from the records of the earlier run (study.json).

    Raises ConfigError naming every dataset whose configuration changed and is not in `restart`.
    """
    unknown = sorted(set(restart) - {p.dataset for p in plan.datasets})
    if unknown:
        raise ConfigError(f"--restart {' '.join(unknown)}: not a dataset of study '{plan.config.study.name}' "
                          f"({', '.join(p.dataset for p in plan.datasets)})")
    records = (previous or {}).get("dataset_records", {})
    decisions, refused = [], []
    for p in plan.datasets:
        record = records.get(p.dataset)
        if p.dataset in restart:
            decisions.append(DatasetDecision(p.dataset, "restart"))
            continue
        if record is None:
            decisions.append(DatasetDecision(p.dataset, "start"))
            continue
        new = dataset_record(plan, p)
        changed = [Change(_override_name(c.key), c.old, c.new)
                   for c in changes_between(record["shaping"], new["shaping"])]
        changed += [InputChange(text) for text in changed_inputs(record.get("inputs"), new.get("inputs"), p.dataset)]
        kept = int(record.get("num_samples", 0))
        if changed:
            refused.append((p.dataset, changed))
        action = "extend" if p.num_samples > kept else "resume"
        decisions.append(DatasetDecision(p.dataset, action, changed, kept))
    if refused:
        raise ConfigError(_refusal(plan, refused))
    return decisions


def _refusal(plan, refused: list[tuple[str, list[Change]]]) -> str:
    lines = [(f"study '{plan.config.study.name}' in {plan.study_dir} was run with other settings or input files; "
              "its kept results would mix two configurations:")]
    for dataset, changes in refused:
        lines.append(f"  {dataset}: " + "; ".join(str(c) for c in changes))
    names = " ".join(f"--restart {d}" for d, _ in refused)
    lines.append(f"Run with the earlier values (and files) to resume; or {names} to start those datasets over "
                 "(the other datasets' results are kept); or --fresh to start the whole study over; "
                 "or set another study.name.")
    return "\n".join(lines)


def raise_sample_target(exp_dir: str, num_samples: int) -> int:
    """Make a saved Tune experiment generate trials up to `num_samples` when restored (if it was set
    lower); returns the earlier target. Tune restores the number of trials from its saved search state
    (search_gen_state-*.json, a cloudpickled dict Tune wrote in this experiment), not from the
    configuration it is restored with, so the target is raised there."""
    import pyarrow.fs as pafs
    from ray import cloudpickle

    from medguna.study.remote import filesystem

    fs, inner = filesystem(exp_dir)
    entries = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    states = sorted(e.path for e in entries if e.base_name.startswith("search_gen_state-"))
    if not states:
        raise ConfigError(f"{exp_dir} has no saved search state (search_gen_state-*.json) to extend; "
                          "start that dataset over with --restart <dataset>")
    newest = states[-1]  # Tune restores the newest by name (a timestamped session string)
    with fs.open_input_stream(newest) as f:
        state = cloudpickle.loads(f.read())
    earlier = int(state["total_samples"])
    if earlier >= num_samples:
        return earlier  # never lowered: Tune would stop short of trials it already generated
    state["total_samples"], state["finished"] = num_samples, False
    with fs.open_output_stream(newest) as f:
        f.write(cloudpickle.dumps(state))
    return earlier


def read_previous(study_json_text: str | None) -> dict[str, Any] | None:
    return json.loads(study_json_text) if study_json_text else None
