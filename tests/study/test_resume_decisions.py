"""Running a study again: what changed since its kept results were made, and what each dataset does."""

from __future__ import annotations

import json

import pytest
from ray import cloudpickle

from medguna.compose import compose_study
from medguna.errors import ConfigError
from medguna.study.resume import decide, raise_sample_target
from medguna.study.runner import _write_study_json, plan_study


def _plan(tmp_path, *extra: str):
    return plan_study(compose_study([f"storage.path={tmp_path / 'runs'}", f"storage.cache_dir={tmp_path / 'c'}",
                                     "study.datasets=[shenzhen,montgomery]", *extra]))


def _first_run(tmp_path, *extra: str) -> dict:
    plan = _plan(tmp_path, *extra)
    _write_study_json(plan, None)
    return json.loads((tmp_path / "runs" / "chestxray" / "study.json").read_text())


def test_same_settings_resume_and_more_samples_extend(tmp_path):
    previous = _first_run(tmp_path)
    # Resources, storage and caches may change between runs without touching results.
    same = _plan(tmp_path, "resources.max_concurrent_trials=1", f"storage.cache_dir={tmp_path / 'other'}")
    assert [d.action for d in decide(same, previous)] == ["resume", "resume"]
    more = decide(_plan(tmp_path, "study.demo_num_samples=5"), previous)
    assert [(d.action, d.kept_samples) for d in more] == [("extend", 3), ("extend", 3)]


def test_a_changed_setting_is_refused_naming_old_and_new_values(tmp_path):
    previous = _first_run(tmp_path)
    narrowed = _plan(tmp_path, "search.space.entropy_weight.high=0.2", "data.roots.montgomery=null")
    with pytest.raises(ConfigError) as err:
        decide(narrowed, previous)
    text = str(err.value)
    assert "shenzhen: search.space.entropy_weight.high: 3.0 -> 0.2" in text
    assert "montgomery: search.space.entropy_weight.high: 3.0 -> 0.2" in text
    assert "--restart shenzhen --restart montgomery" in text and "--fresh" in text
    # A per-dataset change names that dataset alone, under the override's own name.
    with pytest.raises(ConfigError, match=r"montgomery: data.split_seed: 0 -> 1") as err:
        decide(_plan(tmp_path, "data.split_seed=1"), previous)
    changed = _plan(tmp_path, "method.stage2_lr=0.01")
    assert [d.action for d in decide(changed, previous, restart=["shenzhen", "montgomery"])] == ["restart"] * 2
    with pytest.raises(ConfigError, match="--restart idrid: not a dataset of study 'chestxray'"):
        decide(changed, previous, restart=["idrid"])


def test_study_json_keeps_the_first_configuration_and_lists_every_run(tmp_path):
    previous = _first_run(tmp_path, "search.sampler_seed=9")
    assert previous["dataset_records"]["shenzhen"]["num_samples"] == 3
    _write_study_json(_plan(tmp_path, "study.demo_num_samples=5"), previous)
    info = json.loads((tmp_path / "runs" / "chestxray" / "study.json").read_text())
    assert info["config"]["study"]["demo_num_samples"] == 3  # what the kept results were made with
    assert info["dataset_records"]["shenzhen"]["num_samples"] == 5
    assert [run["num_samples"]["shenzhen"] for run in info["runs"]] == [3, 5]


def test_the_saved_search_state_target_is_raised_in_the_newest_state(tmp_path):
    for stamp, counter in (("2026-12-01_10-00-00", 2), ("2026-12-01_11-00-00", 3)):
        state = {"counter": counter, "total_samples": 3, "finished": False, "name:ConcurrencyLimiter": {}}
        (tmp_path / f"search_gen_state-{stamp}.json").write_bytes(cloudpickle.dumps(state))
    assert raise_sample_target(str(tmp_path), 5) == 3
    newest = cloudpickle.loads((tmp_path / "search_gen_state-2026-12-01_11-00-00.json").read_bytes())
    assert newest == {"counter": 3, "total_samples": 5, "finished": False, "name:ConcurrencyLimiter": {}}
    assert raise_sample_target(str(tmp_path), 4) == 5
    assert cloudpickle.loads((tmp_path / "search_gen_state-2026-12-01_11-00-00.json").read_bytes())[
        "total_samples"] == 5  # never lowered
    with pytest.raises(ConfigError, match="no saved search state"):
        raise_sample_target(str(tmp_path / "empty"), 5)


def test_the_optuna_export_skips_values_outside_a_narrowed_space(tmp_path):
    # A study from before settings were compared, run again with entropy_weight narrowed to <= 0.2:
    # its 1.5 trial used to crash the export ("not contained in the distribution").
    from types import SimpleNamespace

    import optuna

    from medguna.study.runner import export_optuna

    plan = _plan(tmp_path, "search.space.entropy_weight.high=0.2")
    params = {"adapter_width": 0, "prompt_length": 0, "description_source": "curated+templates"}
    rows = {"status": "completed", "objective_best_so_far": 0.5, "objective_selected": 0.5, "epoch": 2}
    results = [SimpleNamespace(metrics=rows, config={**params, "entropy_weight": w}, error=None) for w in (1.5, 0.1)]
    summary = export_optuna(plan, plan.datasets[0], results)
    assert summary["counts"]["completed"] == 2 and summary["not_in_optuna_outside_space"] == 1
    db = tmp_path / "runs" / "chestxray" / "shenzhen" / "optuna.db"
    (kept,) = optuna.load_study(study_name="chestxray-shenzhen", storage=f"sqlite:///{db}").trials
    assert kept.params["entropy_weight"] == 0.1
