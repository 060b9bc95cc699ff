"""The concurrency limit counts what an autoscaling cluster can grow to, not only the nodes present."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medguna.study import concurrency
from medguna.study.autoscaler import NodeGroup, autoscaler_node_groups, read_autoscaler_config
from medguna.study.concurrency import choose_concurrency
from medguna.study_config import ResourcesConfig

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
HEAD_ONLY = [NodeGroup({"CPU": 4.0, "GPU": 0.0}, 1)]  # cluster.yaml's head_cpu before any worker starts


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def gpu(**changes) -> ResourcesConfig:
    """studies/conf/resources/gpu.yaml's settings: 4 CPUs and 1 GPU per trial."""
    return ResourcesConfig(**{"address": "auto", "cpus_per_trial": 4, "gpus_per_trial": 1, **changes})


def test_head_only_cluster_yaml_study_plans_for_every_gpu_the_node_types_allow(cluster_config):
    # The head alone fits no GPU trial (the old limit: 1). cluster.yaml allows 2 gpu_4x_a10g nodes
    # (4 trials each) and 8 gpu_1x_a10g nodes (1 each) within max_workers 10: 2*4 + 8*1 = 16.
    chosen = choose_concurrency(gpu(), HEAD_ONLY, autoscaler_config=cluster_config)
    assert chosen.limit == 16
    assert "node types" in chosen.reason
    assert choose_concurrency(gpu(), HEAD_ONLY).limit == 1  # no autoscaler view: one at a time


def test_the_global_max_workers_counts_the_largest_node_types_first(cluster_config):
    config = {**cluster_config, "max_workers": 3}
    # 2 gpu_4x_a10g (8 trials) + 1 gpu_1x_a10g (1 trial): the most GPUs 3 workers can hold.
    assert choose_concurrency(gpu(), HEAD_ONLY, autoscaler_config=config).limit == 9
    groups = autoscaler_node_groups(config)
    assert [(g.resources["GPU"], g.count) for g in groups] == [(0.0, 1), (4.0, 2), (1.0, 1)]


def test_fractional_and_multi_gpu_trials_pack_per_node(cluster_config):
    # 0.5 GPU + 1 CPU: two per A10G -> 2*8 (gpu_4x) + 8*2 (gpu_1x) + 0 (head, no GPU) = 32.
    half = gpu(cpus_per_trial=1, gpus_per_trial=0.5)
    assert choose_concurrency(half, HEAD_ONLY, autoscaler_config=cluster_config).limit == 32
    # 2 GPUs per trial (a TorchTrainer of two {4 CPU, 1 GPU} processes): 16 processes -> 8 trials.
    pair = gpu(gpus_per_trial=2)
    assert choose_concurrency(pair, HEAD_ONLY, autoscaler_config=cluster_config).limit == 8


def test_the_user_can_state_the_cluster_size_or_the_limit(cluster_config):
    assert choose_concurrency(gpu(max_cluster_gpus=6), HEAD_ONLY).limit == 6
    assert choose_concurrency(gpu(max_cluster_gpus=6, gpus_per_trial=0.5, cpus_per_trial=1), HEAD_ONLY).limit == 12
    chosen = choose_concurrency(gpu(max_concurrent_trials=3), HEAD_ONLY, autoscaler_config=cluster_config)
    assert (chosen.limit, chosen.reason) == (3, "resources.max_concurrent_trials")


def test_nodes_present_still_count_and_a_reported_maximum_is_used():
    present = [NodeGroup({"CPU": 16.0, "GPU": 2.0}, 1), NodeGroup({"CPU": 8.0, "GPU": 1.0}, 1)]
    assert choose_concurrency(gpu(), present).limit == 3
    assert choose_concurrency(ResourcesConfig(cpus_per_trial=1), [NodeGroup({"CPU": 2.0}, 1)]).limit == 2
    # An autoscaler that reports totals: 40 CPUs and 8 GPUs fit min(40 // 4, 8 // 1) = 8 trials.
    chosen = choose_concurrency(gpu(), HEAD_ONLY, reported_max={"CPU": 40.0, "GPU": 8.0})
    assert (chosen.limit, chosen.reason) == (8, "the autoscaler's reported maximum resources")


def test_a_local_ray_ignores_an_autoscaler_config_on_the_machine(tmp_path, monkeypatch, cluster_config):
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(cluster_config))
    monkeypatch.setattr(concurrency, "present_node_groups", lambda: HEAD_ONLY)
    monkeypatch.setattr(concurrency, "reported_max_resources", lambda: None)
    joined = gpu(autoscaling_config=str(path))
    assert concurrency.study_concurrency(joined, read_autoscaler_config(path)).limit == 16
    assert concurrency.study_concurrency(gpu(address="local"), read_autoscaler_config(path)).limit == 1
    assert read_autoscaler_config(tmp_path / "missing.yaml") is None
    assert concurrency.study_concurrency(joined, None).limit == 1
