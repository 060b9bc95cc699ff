"""A study whose trials ask for more than the cluster has: refused on a fixed cluster, and on an
autoscaling one waited for, for as long as the user allows (resources.resource_wait_s).

Ray keeps such trials PENDING without end and says why only in a warning on stderr, so a study on a
machine without GPUs (or a cluster whose autoscaler cannot add any) otherwise shows "0 running"
forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ray.tune import Callback

from medguna.errors import ConfigError, MedgunaError
from medguna.study.guards import needed_gpus


class ResourcesNeverCame(MedgunaError):
    """No trial of the study could start within resources.resource_wait_s."""


def check_cluster_gpus(resources, *, cluster_gpus: float, autoscaling: bool,
                       log: Callable[[str], None] = print) -> float | None:
    """None when the cluster can run a trial now; the wait (seconds, 0: no limit) when an autoscaler
    may add the GPUs; ConfigError on a cluster that cannot grow."""
    need = needed_gpus(resources)
    if need == 0 or cluster_gpus >= need:
        return None
    if not autoscaling:
        raise ConfigError(
            f"resources.gpus_per_trial={resources.gpus_per_trial:g} but the Ray cluster "
            f"(resources.address={resources.address}) has {cluster_gpus:g} GPU(s) and no autoscaler that could "
            "add more: trials would wait forever. Set resources.gpus_per_trial to what a node has, add GPU "
            "nodes to the cluster, or (on a cluster started with `ray up`) set resources.autoscaling_config")
    wait = float(resources.resource_wait_s)
    limit = f"at most {wait:g} s (resources.resource_wait_s)" if wait > 0 else "without limit (resources.resource_wait_s=0)"
    log(f"the cluster has {cluster_gpus:g} GPU(s) now and each trial needs {need:g}: the study waits for the "
        f"autoscaler to add GPU nodes, {limit}")
    return wait


def cluster_can_run(resources, log: Callable[[str], None] = print) -> float | None:
    """check_cluster_gpus on the Ray cluster this driver joined: it can grow where it is not Ray
    started here and an autoscaler config is found, or the user states what it can grow to."""
    import ray

    from medguna.study.storage import autoscaler_max_nodes

    r = resources
    if needed_gpus(r) == 0:
        return None  # CPUs: every node has them
    autoscaling = r.address != "local" and (r.max_cluster_gpus is not None or bool(
        r.autoscaling_config and autoscaler_max_nodes(r.autoscaling_config) is not None))
    return check_cluster_gpus(r, cluster_gpus=float(ray.cluster_resources().get("GPU", 0)),
                              autoscaling=autoscaling, log=log)


class WaitForResources(Callback):
    """Stops the experiment with ResourcesNeverCame when no trial has started `timeout_s` after it began."""

    def __init__(self, timeout_s: float, need_text: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s, self.need_text, self.clock = timeout_s, need_text, clock
        self.started: float | None = None
        self.satisfied = False

    def setup(self, **info) -> None:
        self.started = self.clock()

    def on_step_begin(self, iteration, trials, **info) -> None:
        if self.satisfied:
            return
        if any(trial.status != "PENDING" for trial in trials):
            self.satisfied = True  # one trial got its resources: the cluster can run the study
            return
        if self.started is None:
            self.started = self.clock()
        if self.timeout_s > 0 and self.clock() - self.started > self.timeout_s:
            raise ResourcesNeverCame(
                f"no trial could start in {self.timeout_s:g} s: the cluster never provided {self.need_text}. "
                "Nothing ran, so nothing is lost; check the autoscaler (`ray status`, its node types' GPUs "
                "and max_workers), then run the same command again, or raise resources.resource_wait_s")
