"""What an autoscaling Ray cluster may grow to, read once from its autoscaler config.

`ray up cluster.yaml` (and KubeRay) start a study with the head alone: GPU node types have
`min_workers: 0`. Both the storage check (how many nodes will write results) and the concurrency
limit (how many trials may run at once) must plan for the nodes the cluster may add, not only
those present now; both read the config parsed here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAY_BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
"""Where `ray up` leaves the prepared cluster config on the head node (inside the container)."""


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one kind: the resources of each, and how many of them there are (or may be)."""

    resources: dict[str, float]
    count: int


def read_autoscaler_config(path: str | Path | None) -> dict[str, Any] | None:
    """The autoscaler config at `path`, or None where this machine has none: a laptop, a fixed
    cluster, a SLURM job, or a file that is not a YAML mapping."""
    import yaml  # PyYAML comes with Ray

    if not path:
        return None
    try:
        config = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def autoscaler_node_groups(config: dict[str, Any]) -> list[NodeGroup] | None:
    """The largest cluster an autoscaler config (cluster.yaml's schema) allows: the head plus, within
    the global `max_workers`, each worker type up to its own `max_workers`. Where the global limit is
    smaller than the types' limits together, the types with the most GPUs (then CPUs) per node are
    counted first, so the result is what the cluster can hold at most. None if it names no node types."""
    types = config.get("available_node_types")
    if not isinstance(types, dict) or not types:
        return None
    head = config.get("head_node_type")
    remaining = config.get("max_workers", sys.maxsize)
    groups = [NodeGroup(_numbers(types[head].get("resources")), 1)] if head in types else []
    workers = sorted(((name, spec) for name, spec in types.items() if name != head),
                     key=lambda item: (_numbers(item[1].get("resources")).get("GPU", 0),
                                       _numbers(item[1].get("resources")).get("CPU", 0)), reverse=True)
    for _, spec in workers:
        count = min(int(spec.get("max_workers", remaining)), remaining)
        if count > 0:
            groups.append(NodeGroup(_numbers(spec.get("resources")), count))
            remaining -= count
    return groups


def autoscaler_max_nodes(config: dict[str, Any] | None) -> int | None:
    """Most nodes (head included) the autoscaler may run, or None without a config that states
    a global `max_workers`."""
    if not isinstance(config, dict) or not isinstance(config.get("max_workers"), int):
        return None
    global_limit = config["max_workers"]
    head_type = config.get("head_node_type")
    per_type = 0
    for name, node_type in (config.get("available_node_types") or {}).items():
        # Ray's defaults: the head's type adds no workers, other types up to the global limit.
        default = 0 if name == head_type else global_limit
        per_type += int((node_type or {}).get("max_workers", default))
    return 1 + min(global_limit, per_type)


def _numbers(resources: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in (resources or {}).items() if isinstance(v, (int, float))}
