"""count_alive_nodes against a real (one-machine) multi-node Ray cluster."""

from __future__ import annotations

import time

import pytest
import ray
from ray.cluster_utils import Cluster

from medguna.errors import ConfigError
from medguna.study.storage import check_storage_for_cluster, count_alive_nodes


def _wait_for_count(expected: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    count = count_alive_nodes()
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        count = count_alive_nodes()
    return count


def test_count_needs_a_connected_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(RuntimeError, match=r"call ray\.init"):
        count_alive_nodes()


def test_count_follows_nodes_joining_and_leaving(tmp_path) -> None:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=1, num_gpus=1)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        assert _wait_for_count(2) == 2
        # The real question the count answers: is a node-local path safe here?
        with pytest.raises(ConfigError, match="has 2 nodes"):
            check_storage_for_cluster(
                str(tmp_path / "runs"), count_alive_nodes(), mounts_file=tmp_path / "none"
            )
        cluster.remove_node(worker)
        assert _wait_for_count(1) == 1
        check_storage_for_cluster(
            str(tmp_path / "runs"), count_alive_nodes(), mounts_file=tmp_path / "none"
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
