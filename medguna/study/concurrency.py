"""How many trials of a study run at once: what the cluster can grow to, not only what it has now.

An autoscaling cluster (`ray up cluster.yaml`, KubeRay) starts a study with its head alone: GPU
node types have `min_workers: 0`. A limit counted from the nodes present then is one trial (or
none), so Tune keeps a single trial pending, the autoscaler sees demand for one GPU node and the
study runs one trial at a time. The limit is therefore the larger of what fits on the nodes
present and what fits on the nodes the cluster may grow to: from `resources.max_cluster_gpus`
when the user states it, else from the autoscaler's own view (the cluster config it reports to
Ray, or its config file). Trials beyond the current capacity wait as pending, and that pending
demand is what makes the autoscaler add nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from medguna.study.autoscaler import NodeGroup, autoscaler_node_groups
from medguna.study_config import ResourcesConfig


@dataclass(frozen=True)
class Concurrency:
    """The chosen limit and, for the banner and docs, where it came from."""

    limit: int
    reason: str


def trial_bundle(r: ResourcesConfig) -> tuple[dict[str, float], int]:
    """What one training process of a trial reserves, and how many processes a trial has.

    A multi-GPU trial is a TorchTrainer with one process per GPU (each {CPU: cpus_per_trial,
    GPU: 1}); a CPU TorchTrainer has workers_per_trial processes of cpus_per_trial CPUs.
    """
    if r.distributed:
        return {"CPU": r.cpus_per_trial, "GPU": 1.0 if r.gpus_per_trial > 1 else 0.0}, r.num_workers
    return {"CPU": r.cpus_per_trial, "GPU": r.gpus_per_trial}, 1


def bundles_per_node(node: dict[str, float], bundle: dict[str, float]) -> int:
    """How many copies of `bundle` fit on one node (Ray places a process on a single node)."""
    fits = [math.floor(node.get(name, 0.0) / amount + 1e-9) for name, amount in bundle.items() if amount > 0]
    return max(min(fits), 0) if fits else 0


def trials_that_fit(groups: list[NodeGroup], r: ResourcesConfig) -> int:
    """Trials that can run at once on these nodes, packing each trial's processes node by node."""
    bundle, processes = trial_bundle(r)
    bundles = sum(bundles_per_node(g.resources, bundle) * g.count for g in groups)
    return bundles // processes


def reported_max_resources() -> dict[str, float] | None:
    """The most of each resource the cluster may hold, as an autoscaler reported it to Ray's GCS (the
    value Ray Train reads for the same purpose). None where nothing was reported, which is the
    usual case: not every autoscaler reports it. A private Ray API: any failure reads as "not reported"."""
    try:
        from ray._private.state import state

        reported = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - an absent or changed private API must not stop a study
        return None
    return {k: float(v) for k, v in reported.items()} if reported else None


def present_node_groups() -> list[NodeGroup]:
    """The alive nodes of the connected Ray cluster, one group each."""
    import ray

    return [NodeGroup({k: float(v) for k, v in node.get("Resources", {}).items()}, 1)
            for node in ray.nodes() if node.get("Alive")]


def choose_concurrency(r: ResourcesConfig, present: list[NodeGroup], *,
                       autoscaler_config: dict[str, Any] | None = None,
                       reported_max: dict[str, float] | None = None) -> Concurrency:
    """The number of trials Tune may run at once (pure: the cluster views come in as arguments).

    1. resources.max_concurrent_trials, when set: the user's number.
    2. Otherwise the largest of: trials that fit on the nodes present; trials that fit on the nodes
       the autoscaler config allows; trials that fit in the resources the autoscaler reported; and,
       for GPU trials, resources.max_cluster_gpus divided by the GPUs a trial takes (the user's
       statement of what the cluster grows to; CPUs arrive with the GPU nodes, so they do not
       limit it).
    """
    if r.max_concurrent_trials:
        return Concurrency(r.max_concurrent_trials, "resources.max_concurrent_trials")
    candidates = [(trials_that_fit(present, r), "the nodes present now")]
    groups = autoscaler_node_groups(autoscaler_config) if autoscaler_config else None
    if groups:
        candidates.append((trials_that_fit(groups, r), "the autoscaler's node types at their max_workers"))
    if reported_max:
        candidates.append((_trials_in_total(reported_max, r), "the autoscaler's reported maximum resources"))
    if r.max_cluster_gpus is not None and r.gpus_per_trial > 0:
        gpus = float(r.num_workers) if r.distributed else r.gpus_per_trial
        candidates.append((int(r.max_cluster_gpus // gpus), "resources.max_cluster_gpus"))
    limit, reason = max(candidates, key=lambda c: c[0])
    return Concurrency(max(limit, 1), reason)


def _trials_in_total(total: dict[str, float], r: ResourcesConfig) -> int:
    """Trials within totals that say nothing of node sizes: counted as one node of that size, the
    closest this view allows."""
    return trials_that_fit([NodeGroup(total, 1)], r)


def study_concurrency(r: ResourcesConfig, autoscaler_config: dict[str, Any] | None) -> Concurrency:
    """choose_concurrency for the Ray cluster this process is connected to; `autoscaler_config`:
    the config read from resources.autoscaling_config (medguna.study.autoscaler), or None."""
    # A Ray this process started itself (address=local) has no autoscaler, whatever files lie around.
    config = autoscaler_config if r.address != "local" else None
    return choose_concurrency(r, present_node_groups(), autoscaler_config=config,
                              reported_max=reported_max_resources())
