"""A study on a real multi-node Ray cluster on one machine: placement and node loss.

The cluster is `ray.cluster_utils.Cluster`: a head with no CPUs or GPUs (it only hosts the study
driver) and two worker nodes with two CPUs and one fake GPU each. With `gpus_per_trial=0.5`
each worker node holds two trials, so four concurrent trials must use both nodes. Midway one
worker node is removed, as a preempted cloud machine would be; its trials must retry from their
epoch checkpoints on the surviving node and the study must finish with every trial accounted for.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import ray
import torch
from ray.cluster_utils import Cluster

from medguna.compose import compose_study
from medguna.errors import ConfigError
from medguna.study.runner import run_study
from medguna.study.storage import SHARED_ROOTS_ENV, check_storage_for_cluster, declared_shared_roots

NUM_TRIALS = 4
EPOCHS = 2


def _read_rows(result_json: Path) -> list[dict]:
    return [json.loads(line) for line in result_json.read_text().splitlines() if line.strip()]


# ---- the declared shared roots (fast) ----

def test_declared_root_admits_a_local_path_on_a_multinode_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = str(tmp_path / "shared" / "runs")
    no_mounts = tmp_path / "no_mounts"  # an empty mount table: nothing is a network filesystem
    monkeypatch.delenv(SHARED_ROOTS_ENV, raising=False)
    with pytest.raises(ConfigError, match=SHARED_ROOTS_ENV):
        check_storage_for_cluster(runs, 3, mounts_file=no_mounts)
    monkeypatch.setenv(SHARED_ROOTS_ENV, f"/elsewhere:{tmp_path / 'shared'}")
    assert declared_shared_roots() == ["/elsewhere", str(tmp_path / "shared")]
    check_storage_for_cluster(runs, 3, mounts_file=no_mounts)
    # A sibling whose name only starts like the root is not under it.
    with pytest.raises(ConfigError, match="node-local directory"):
        check_storage_for_cluster(str(tmp_path / "shared2" / "runs"), 3, mounts_file=no_mounts)


def test_declared_root_must_be_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_ROOTS_ENV, "/data/shared:relative/dir")
    with pytest.raises(ConfigError, match=r"lists 'relative/dir', which is not an absolute path"):
        declared_shared_roots()
    with pytest.raises(ConfigError, match=SHARED_ROOTS_ENV):
        check_storage_for_cluster("s3://bucket/runs", 2)


# ---- the study on a three-node cluster (slow) ----

@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if ray.is_initialized():
        ray.shutdown()
    test_cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # Notice a lost node in about a second instead of Ray's default of about fifteen.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 2},
        },
    )
    for _ in range(2):
        test_cluster.add_node(num_cpus=2, num_gpus=1)
    test_cluster.wait_for_nodes()
    try:
        yield test_cluster
    finally:
        ray.shutdown()
        test_cluster.shutdown()


class NodeKiller(threading.Thread):
    """Removes the worker node of the first prompted trial that has written an epoch checkpoint.

    The node id comes from the checkpoint itself (the trial's history rows carry `node_id`),
    so the node removed holds a trial with something to resume from. Only prompted trials are
    chosen: their epochs take seconds, while a prompt-free trial (cached features) finishes its
    last epoch in milliseconds, before the node could be removed under it.
    """

    def __init__(self, cluster: Cluster, experiment_dir: Path, timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.experiment_dir, self.timeout_s = cluster, experiment_dir, timeout_s
        self.removed_node_id: str | None = None
        self.removed_at_epoch: int | None = None
        self.stop = threading.Event()

    def _first_checkpoint(self) -> tuple[str, int] | None:
        for state_file in sorted(self.experiment_dir.glob("t*/checkpoint_*/trial_state.pt")):
            try:  # the trial's params.json and the checkpoint may still be being written
                params = json.loads((state_file.parents[1] / "params.json").read_text())
                if params["prompt_length"] == 0:
                    continue
                state = torch.load(state_file, weights_only=True)
            except (EOFError, RuntimeError, OSError, ValueError):  # look again later
                continue
            return state["history"][-1]["node_id"], int(state["epoch"])
        return None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            found = self._first_checkpoint()
            if found is not None:
                node_id, epoch = found
                node = next(n for n in self.cluster.worker_nodes if n.node_id == node_id)
                self.cluster.remove_node(node, allow_graceful=False)
                self.removed_node_id, self.removed_at_epoch = node_id, epoch
                return
            time.sleep(0.05)


@pytest.mark.slow
def test_study_spreads_over_nodes_and_survives_losing_one(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"  # one disk here; on a real cluster an NFS or S3 location
    monkeypatch.setenv(SHARED_ROOTS_ENV, str(shared))
    cfg = compose_study([
        "study=fundus",
        f"storage.path={shared / 'runs'}",
        f"storage.cache_dir={tmp_path / 'cache'}",
        f"study.demo_num_samples={NUM_TRIALS}",
        "study.demo_confirm_top=0",  # no confirmation stage here (tests/study/test_confirm.py)
        "study.demo_method.stage1_steps=30",
        f"study.demo_method.stage2_epochs={EPOCHS}",
        "study.demo_method.batch_size=8",
        "search.space.prompt_length.choices=[0,4]",
        "data.synthetic_scale=0.5",  # 32 train, 8 val, 12 test images of idrid
        "search.scheduler=none",  # every trial runs all epochs: the node loss meets a live trial
        "resources.gpus_per_trial=0.5",
        "resources.max_failures=2",
        f"resources.address={cluster.address}",
        "runtime.cpu=true",  # the GPUs are fake: Ray accounts for them, torch must not use CUDA
    ])
    worker_ids = {node.node_id for node in cluster.worker_nodes}
    experiment_dir = shared / "runs" / "fundus" / "idrid"
    killer = NodeKiller(cluster, experiment_dir)
    killer.start()
    try:
        run_study(cfg, log=lambda *_: None)
    finally:
        killer.stop.set()
        killer.join()

    assert killer.removed_node_id in worker_ids, "no trial checkpointed: no node was removed"
    survivor = (worker_ids - {killer.removed_node_id}).pop()
    complete = json.loads((experiment_dir / "medguna_complete.json").read_text())
    assert complete["counts"] == {"completed": NUM_TRIALS, "stopped_early": 0, "failed": 0,
                                  "incomplete": 0}
    trial_dirs = sorted(experiment_dir.glob("t*_*"))
    assert len(trial_dirs) == NUM_TRIALS
    rows = {d.name: _read_rows(d / "result.json") for d in trial_dirs}
    for name, trial_rows in rows.items():
        assert trial_rows[-1]["status"] == "completed", name
        assert trial_rows[-1]["epoch"] == EPOCHS, name
        assert {r["node_id"] for r in trial_rows} <= worker_ids, name  # never on the head
    # Four trials at once fit only by using both nodes (two half-GPU trials per node). The lost
    # node's epochs are recorded in result rows or, if it died first, in its checkpoints.
    nodes_used = {r["node_id"] for trial_rows in rows.values() for r in trial_rows}
    for state_file in experiment_dir.glob("t*/checkpoint_*/trial_state.pt"):
        history = torch.load(state_file, weights_only=True)["history"]
        nodes_used |= {r["node_id"] for r in history}
    assert nodes_used == worker_ids
    # Trials on the lost node failed with Ray's node-death error and were retried; the one whose
    # checkpoint chose the node resumed from it on the survivor: no epoch up to the checkpoint's
    # was trained again. (Whether Tune kept the row the lost node reported last depends on
    # whether it arrived before the node died, so the checkpoint is the record of that epoch.)
    resumed = []
    for trial_dir in trial_dirs:
        error_file = trial_dir / "error.txt"
        if not error_file.is_file() or killer.removed_node_id not in error_file.read_text():
            continue
        checkpoints = sorted(trial_dir.glob("checkpoint_*/trial_state.pt"))
        history = torch.load(checkpoints[0], weights_only=True)["history"] if checkpoints else []
        if not history or history[-1]["node_id"] != killer.removed_node_id:
            continue  # lost before its first checkpoint: rightly rerun from the start
        survivor_epochs = [r["epoch"] for r in rows[trial_dir.name] if r["node_id"] == survivor]
        assert survivor_epochs == list(range(len(history) + 1, EPOCHS + 1)), trial_dir.name
        resumed.append(trial_dir.name)
    # Whether a trial is still running on the node when it goes (rather than having just finished
    # the epoch that triggered the removal) is a race on 2 shared cores, so the resume above is
    # checked wherever it happened, and completion of every trial (above) whatever the timing.
    if not resumed:
        warnings.warn("node loss met no running trial with a checkpoint from that node; resume unchecked")
    # Every trial reached the Optuna export as a finished trial with its value.
    exported = optuna.load_study(study_name="fundus-idrid",
                                 storage=f"sqlite:///{experiment_dir / 'optuna.db'}")
    states = [t.state for t in exported.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.COMPLETE] * NUM_TRIALS
