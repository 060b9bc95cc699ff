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
