"""A study on a cluster that starts with no GPU node runs several trials at once once the autoscaler
(Ray's fake_multinode provider) adds GPU nodes, in the search and in the confirmation stage alike:
the concurrency limit comes from the node types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides
from fake_autoscaler import FakeAutoscalingCluster

pytestmark = pytest.mark.slow

RUN = Path(__file__).resolve().parents[2] / "studies" / "run.py"
GPU_NODE = {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2}


def _new_cluster() -> FakeAutoscalingCluster:
    return FakeAutoscalingCluster({"CPU": 1, "GPU": 0}, {"gpu_node": GPU_NODE}, max_workers=2)


@pytest.fixture
def clusters():
    """Start fake autoscaling clusters (each with its head alone) one after another."""
    started: list[FakeAutoscalingCluster] = []

    def start() -> FakeAutoscalingCluster:
        for earlier in started:
            earlier.stop()
        fake = _new_cluster()
        started.append(fake)
        fake.start()
        return fake

    try:
        yield start
    finally:
        for fake in started:
            fake.stop()
    assert not any(fake.own_processes() for fake in started)


def _intervals(exp: Path) -> list[tuple[float, float, str]]:
    """(start, end, node) of each trial, from its last result row (Tune's timestamp and time_total_s)."""
    spans = []
    for result in exp.glob("t0*/result.json"):
        last = json.loads(result.read_text().splitlines()[-1])
        spans.append((last["timestamp"] - last["time_total_s"], last["timestamp"], last["node_id"]))
    return spans


def _run(cluster, tmp_path, shared_cache, *extra: str) -> subprocess.CompletedProcess:
    overrides = [o for o in tiny_overrides(tmp_path, shared_cache) if not o.startswith("study.demo_confirm")]
    args = [sys.executable, str(RUN), "--study", "chestxray", "--no-report", *overrides,
            "study.datasets=[montgomery]", "study.demo_num_samples=2", "search.scheduler=none",
            f"resources.address={cluster.address}", "resources.gpus_per_trial=1", "resources.cpus_per_trial=1",
            f"resources.autoscaling_config={cluster.config_path}", "runtime.cpu=true",
            # Long enough (about 10 s) that the overlap does not hinge on the second node starting
            # within a trial's few seconds of the first: a loaded CI machine once missed it by 0.05 s.
            "study.demo_method.stage2_epochs=24", *extra]
    # The nodes share this machine's disk; declared so, as on a cluster with a shared mount.
    env = {**cluster.env, "MEDGUNA_SHARED_STORAGE_ROOTS": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for head_only in ("RAY_OVERRIDE_NODE_ID_FOR_TESTING", "RAY_FAKE_CLUSTER"):
        env.pop(head_only)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _overlap_on_two_nodes(exp: Path) -> None:
    spans = _intervals(exp)
    assert len(spans) == 2
    (start_a, end_a, node_a), (start_b, end_b, node_b) = spans
    assert node_a != node_b  # two fake GPU nodes, started on demand
    assert max(start_a, start_b) < min(end_a, end_b), f"the trials did not overlap: {spans}"


def test_search_and_confirmation_run_trials_at_once_on_nodes_the_autoscaler_adds(clusters, tmp_path, shared_cache):
    # The search, without its confirmation: the head alone holds no GPU trial; the node types allow two.
    done = _run(clusters(), tmp_path, shared_cache, "study.demo_confirm_top=0")
    assert "at most 2 at once (from the autoscaler's node types at their max_workers)" in done.stdout
    _overlap_on_two_nodes(tmp_path / "runs" / "chestxray" / "montgomery")
    # The confirmation of the finished search, on a cluster that is again its head alone: it plans
    # for the nodes the autoscaler may add, as the search does, not for the head present now.
    done = _run(clusters(), tmp_path, shared_cache, "study.demo_confirm_top=1", "study.demo_confirm_seeds=2")
    assert "2 trials, at most 2 at once (from the autoscaler's node types at their max_workers)" in done.stdout
    _overlap_on_two_nodes(tmp_path / "runs" / "chestxray" / "montgomery_confirm")
