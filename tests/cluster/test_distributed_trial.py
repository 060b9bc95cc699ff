"""A multi-worker trial: one Tune trial drives a TorchTrainer of two CPU processes.

Each process trains on its shard of every batch and DDP averages the gradients, so both ranks
must end with the same student, and rank 0's rows reach Tune through TuneReportCallback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch

from medguna.compose import compose_study
from medguna.study.runner import run_study

EPOCHS = 2


@pytest.fixture
def local_ray() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_two_workers_train_one_model_on_split_batches(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # accelerate stays single-process on CPU inside Ray Train unless told otherwise.
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    cfg = compose_study([
        "study=fundus",
        f"storage.path={tmp_path / 'runs'}",
        f"storage.cache_dir={tmp_path / 'cache'}",
        "study.demo_num_samples=1",
        "study.demo_confirm_top=0",  # no confirmation stage here (tests/study/test_confirm.py)
        "study.demo_method.stage1_steps=30",
        f"study.demo_method.stage2_epochs={EPOCHS}",
        "study.demo_method.batch_size=8",
        "search.space.prompt_length.choices=[4]",  # gradients reach the prompts through DDP too
        "data.synthetic_scale=0.5",
        "resources.workers_per_trial=2",
        "resources.max_failures=0",
        "runtime.cpu=true",
    ])
    assert cfg.resources.distributed and cfg.resources.num_workers == 2
    run_study(cfg, log=lambda *_: None)

    experiment_dir = tmp_path / "runs" / "fundus" / "idrid"
    complete = json.loads((experiment_dir / "medguna_complete.json").read_text())
    assert complete["counts"] == {"completed": 1, "stopped_early": 0, "failed": 0, "incomplete": 0}
    (trial_dir,) = experiment_dir.glob("t*_*")
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    final = rows[-1]
    assert final["status"] == "completed"
    assert final["config"]["prompt_length"] == 4
    assert all(r["num_processes"] == 2 for r in rows)  # accelerate saw both Ray Train workers
    assert 0 <= final["test_balanced_accuracy"] <= 1
    # Both ranks' trained students, gathered in rank order: identical only if the gradients of
    # their different data shards were averaged before every step.
    rank0, rank1 = final["student_sha256_by_rank"].split(",")
    assert len(rank0) == 16 and rank0 == rank1

    # The epoch checkpoint was written by rank 0 under the trial's own Ray Train run.
    (train_run,) = (tmp_path / "runs" / "fundus" / "_train").glob(f"train_{final['trial_id']}")
    (state_file,) = train_run.glob("checkpoint_*/trial_state.pt")
    state = torch.load(state_file, weights_only=True)
    assert state["epoch"] == 1 and state["history"][0]["num_processes"] == 2
    assert state["student"]["prompts"].shape[0] == 4
