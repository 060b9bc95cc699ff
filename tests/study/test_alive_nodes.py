"""count_alive_nodes / expected_cluster_nodes against a real one-machine multi-node Ray cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from medguna.errors import ConfigError
from medguna.study.autoscaler import read_autoscaler_config
from medguna.study.storage import (
    check_storage_for_cluster,
    count_alive_nodes,
    expected_cluster_nodes,
)

TWO_TYPES = (
    "max_workers: 4\nhead_node_type: h\navailable_node_types:\n"
    "  h: {resources: {}, node_config: {}}\n  w: {resources: {}, node_config: {}}\n"
)


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head with one CPU; tests add and remove worker nodes (about 1 s each)."""
    if ray.is_initialized():
        ray.shutdown()
    test_cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    ray.init(address=test_cluster.address)
    try:
        yield test_cluster
    finally:
        ray.shutdown()
        test_cluster.shutdown()


def test_head_only_autoscaling_cluster_plans_for_its_limit(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The head alone is alive, but the autoscaler may add workers: a local path is refused."""
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(TWO_TYPES)
    assert _wait_for_count(1) == 1
    assert expected_cluster_nodes(read_autoscaler_config(tmp_path / "absent.yaml")) == 1
    assert expected_cluster_nodes(read_autoscaler_config(bootstrap)) == 5
    local_runs = str(tmp_path / "runs")
    check_storage_for_cluster(local_runs, count_alive_nodes(), mounts_file=tmp_path / "none")
    with pytest.raises(ConfigError, match="has 5 nodes"):
        check_storage_for_cluster(
            local_runs, expected_cluster_nodes(read_autoscaler_config(bootstrap)), mounts_file=tmp_path / "none"
        )


def test_count_follows_nodes_joining_and_leaving(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    assert _wait_for_count(3) == 3
    small_limit = tmp_path / "ray_bootstrap_config.yaml"
    small_limit.write_text("max_workers: 0\navailable_node_types: {}\n")
    assert expected_cluster_nodes(read_autoscaler_config(small_limit)) == 3  # more alive than the file allows
    with pytest.raises(ConfigError, match="has 3 nodes"):
        check_storage_for_cluster(
            str(tmp_path / "runs"), count_alive_nodes(), mounts_file=tmp_path / "none"
        )
    cluster.remove_node(first)
    assert _wait_for_count(2) == 2
