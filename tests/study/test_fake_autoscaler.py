"""A study on a cluster that starts with no GPU node runs several trials at once once the autoscaler
(Ray's fake_multinode provider) adds GPU nodes: the concurrency limit comes from the node types."""

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


@pytest.fixture
def cluster():
    fake = FakeAutoscalingCluster({"CPU": 1, "GPU": 0}, {"gpu_node": GPU_NODE}, max_workers=2)
    try:
        fake.start()
        yield fake
    finally:
        fake.stop()
    assert not fake.own_processes()


def _intervals(exp: Path) -> list[tuple[float, float, str]]:
    """(start, end, node) of each trial, from its last result row (Tune's timestamp and time_total_s)."""
    spans = []
    for result in exp.glob("t0*/result.json"):
        last = json.loads(result.read_text().splitlines()[-1])
        spans.append((last["timestamp"] - last["time_total_s"], last["timestamp"], last["node_id"]))
    return spans


def test_trials_run_at_once_on_nodes_the_autoscaler_adds(cluster, tmp_path, shared_cache):
    args = [sys.executable, str(RUN), "--study", "chestxray", "--no-report", *tiny_overrides(tmp_path, shared_cache),
            "study.datasets=[montgomery]", "study.demo_num_samples=2", "search.scheduler=none",
            f"resources.address={cluster.address}", "resources.gpus_per_trial=1", "resources.cpus_per_trial=1",
            f"resources.autoscaling_config={cluster.config_path}", "runtime.cpu=true",
            # Long enough (about 10 s) that the overlap does not hinge on the second node starting
            # within a trial's few seconds of the first: a loaded CI machine once missed it by 0.05 s.
            "study.demo_method.stage2_epochs=24"]
    # The nodes share this machine's disk; declared so, as on a cluster with a shared mount.
    env = {**cluster.env, "MEDGUNA_SHARED_STORAGE_ROOTS": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for head_only in ("RAY_OVERRIDE_NODE_ID_FOR_TESTING", "RAY_FAKE_CLUSTER"):
        env.pop(head_only)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=420, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The head alone holds no GPU trial; the node types allow two at once.
    assert "at most 2 at once (from the autoscaler's node types at their max_workers)" in done.stdout
    spans = _intervals(tmp_path / "runs" / "chestxray" / "montgomery")
    assert len(spans) == 2
    (start_a, end_a, node_a), (start_b, end_b, node_b) = spans
    assert node_a != node_b  # two fake GPU nodes, started on demand
    assert max(start_a, start_b) < min(end_a, end_b), f"the trials did not overlap: {spans}"
