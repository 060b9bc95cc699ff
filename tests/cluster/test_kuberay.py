"""cluster/kuberay-rayjob.yaml parses as a RayJob and agrees with cluster.yaml and pyproject.toml:
the same image and Ray version, the same node shapes and limits, medguna's dependencies, and a study
command the study's own configuration accepts."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import yaml

from medguna.compose import compose_study
from medguna.study.autoscaler import NodeGroup
from medguna.study.concurrency import choose_concurrency

REPO = Path(__file__).resolve().parents[2]
JOB = yaml.safe_load((REPO / "cluster" / "kuberay-rayjob.yaml").read_text())
CLUSTER = yaml.safe_load((REPO / "cluster.yaml").read_text())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SPEC = JOB["spec"]["rayClusterSpec"]


def _containers() -> list[dict]:
    groups = [SPEC["headGroupSpec"], *SPEC["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_a_rayjob_with_cluster_yamls_image_and_ray_version():
    assert (JOB["apiVersion"], JOB["kind"]) == ("ray.io/v1", "RayJob")
    assert {c["image"] for c in _containers()} == {CLUSTER["docker"]["image"]}
    assert CLUSTER["docker"]["image"].startswith(f"rayproject/ray:{SPEC['rayVersion']}-")
    ray_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("ray["))
    assert f">={SPEC['rayVersion'].rsplit('.', 1)[0]}" in ray_pin
    assert SPEC["enableInTreeAutoscaling"] is True


def test_worker_groups_are_cluster_yamls_gpu_node_types():
    types = CLUSTER["available_node_types"]
    head = types[CLUSTER["head_node_type"]]["resources"]
    assert SPEC["headGroupSpec"]["rayStartParams"] == {"num-cpus": str(head["CPU"]), "num-gpus": str(head["GPU"])}
    shapes = {(t["resources"]["CPU"], t["resources"]["GPU"], t["max_workers"])
              for name, t in types.items() if name != CLUSTER["head_node_type"]}
    groups = set()
    for group in SPEC["workerGroupSpecs"]:
        cpus, gpus = int(group["rayStartParams"]["num-cpus"]), int(group["rayStartParams"]["num-gpus"])
        groups.add((cpus, gpus, group["maxReplicas"]))
        assert group["minReplicas"] == 0  # GPU pods only while trials want them
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert (int(limits["cpu"]), int(limits["nvidia.com/gpu"])) == (cpus, gpus)  # Ray's view = the pod's
    assert groups == shapes


def test_the_entrypoint_is_a_study_command_on_shared_storage():
    words = shlex.split(JOB["spec"]["entrypoint"])
    assert words[:4] == ["python", "studies/run.py", "--study", "chestxray"]
    cfg = compose_study([f"study={words[3]}", *words[4:]])
    assert cfg.storage.path.startswith("s3://") and cfg.resources.address == "auto"
    env = yaml.safe_load(JOB["spec"]["runtimeEnvYAML"])
    assert env["working_dir"].startswith(cfg.storage.path.split("/runs")[0])  # same bucket and prefix
    wanted = [d for d in PYPROJECT["project"]["dependencies"] if not d.startswith("ray[")]
    assert [p for p in env["pip"] if not p.startswith("boto3")] == wanted


def test_the_study_would_run_as_many_trials_as_the_groups_allow():
    # The entrypoint states the groups' GPUs at maxReplicas (8 x 1 + 2 x 4), which sets the limit.
    groups = SPEC["workerGroupSpecs"]
    gpus = sum(int(g["rayStartParams"]["num-gpus"]) * g["maxReplicas"] for g in groups)
    words = shlex.split(JOB["spec"]["entrypoint"])
    cfg = compose_study([f"study={words[3]}", *words[4:]])
    assert cfg.resources.max_cluster_gpus == gpus == 16
    head_only = [NodeGroup({"CPU": 4.0, "GPU": 0.0}, 1)]
    assert choose_concurrency(cfg.resources, head_only).limit == 16
