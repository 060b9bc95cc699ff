"""A study run once per module on synthetic data, with this test session's own Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The demonstration budget, shrunk so a study of a few trials takes seconds per trial.
TINY = [
    "study.demo_method.stage1_steps=30",
    "study.demo_method.stage2_epochs=2",
    "study.demo_method.batch_size=8",
    "search.space.prompt_length.choices=[0,4]",
    "runtime.eval_batch_size=32",
    "study.demo_confirm_top=0",  # the confirmation stage has its own test (test_confirm.py)
    "data.synthetic_scale=1",  # stand-ins a fifth of the demonstration's size
]


def tiny_overrides(tmp: Path, cache: Path, *extra: str) -> list[str]:
    return [f"storage.path={tmp / 'runs'}", f"storage.cache_dir={cache}", *TINY, *extra]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session: synthetic data and the test-size model are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if Ray starts: for configurations that must be refused before any Ray work."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start for a bad configuration")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@pytest.fixture
def stubbed_study(tmp_path, monkeypatch):
    """A two-dataset study (montgomery, then shenzhen) that the real runner drives with Ray's parts
    stubbed: one node, one trial at a time, `tuner(dataset)` as each search's Tuner, three completed
    trials exported, none unfinished. Call it with the tuner class; it returns the configuration.
    Whether Ray counts as started (ray.is_initialized, ray.init) is each test's own choice."""
    from types import SimpleNamespace

    from medguna.compose import compose_study
    from medguna.study import concurrency, experiment, optuna_storage, storage, tune_state

    def study(tuner):
        monkeypatch.setattr(storage, "expected_cluster_nodes", lambda *args: 1)
        monkeypatch.setattr(storage, "count_alive_nodes", lambda *args: 1)
        monkeypatch.setattr(concurrency, "study_concurrency",
                            lambda resources, autoscaler_config: SimpleNamespace(limit=1, reason="a test"))
        monkeypatch.setattr(experiment, "build_trainable", lambda plan, p: None)
        monkeypatch.setattr(experiment, "search_tuner", lambda plan, p, trainable, *args: tuner(p.dataset))
        monkeypatch.setattr(optuna_storage, "export_optuna", lambda plan, p, results: {"counts": {"completed": 3}})
        monkeypatch.setattr(tune_state, "unfinished_trials", lambda exp_dir, results, n: 0)
        return compose_study([f"storage.path={tmp_path / 'runs'}", f"storage.cache_dir={tmp_path / 'cache'}",
                              "study.datasets=[montgomery,shenzhen]", "study.demo_confirm_top=0"])

    return study
