"""cluster/kuberay-rayjob.yaml and cluster/Dockerfile: a RayJob the RayJob CRD's published schema
accepts, whose pods mount the data and checkpoint (read-only) and the study's storage, start from an
image with medguna installed (nothing installed at pod start), and whose entrypoint checks the data
and checkpoint before the study; the same Ray version and node shapes as cluster.yaml.

The schema is KubeRay v1.7.0's RayJob CustomResourceDefinition (tests/cluster/data/
rayjob_crd_schema.json names its source), applied as `kubectl apply` applies it by default
(strict field validation: an unknown field is an error, not silently dropped)."""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from medguna.compose import compose_study
from medguna.study.concurrency import NodeGroup, choose_concurrency
from medguna.study.preflight import check_commands, study_overrides

REPO = Path(__file__).resolve().parents[2]
JOB = yaml.safe_load((REPO / "cluster" / "kuberay-rayjob.yaml").read_text())
DOCKERFILE = (REPO / "cluster" / "Dockerfile").read_text()
CLUSTER = yaml.safe_load((REPO / "cluster.yaml").read_text())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCHEMA_FILE = json.loads((Path(__file__).parent / "data" / "rayjob_crd_schema.json").read_text())
SPEC = JOB["spec"]["rayClusterSpec"]
GROUPS = [SPEC["headGroupSpec"], *SPEC["workerGroupSpecs"]]
DATA_MOUNT, RUNS_MOUNT = "/mnt/medguna-data", "/mnt/medguna-runs"


def _strict(schema):
    """The schema with unknown fields refused, as kubectl's default strict validation refuses them."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


VALIDATOR = jsonschema.Draft7Validator(_strict(SCHEMA_FILE["openAPIV3Schema"]))


def _entrypoint_config():
    words = shlex.split(JOB["spec"]["entrypoint"])
    return words, compose_study(study_overrides(words[4:]))


def test_the_schema_is_the_published_rayjob_crd():
    assert "ray.io_rayjobs.yaml" in SCHEMA_FILE["source"] and "v1.7.0" in SCHEMA_FILE["source"]
    assert (SCHEMA_FILE["crd"], SCHEMA_FILE["version"]) == ("rayjobs.ray.io", "v1")
    spec = SCHEMA_FILE["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {"entrypoint", "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes"} <= set(spec)


def test_the_manifest_validates_against_the_rayjob_schema():
    errors = sorted(VALIDATOR.iter_errors(JOB), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    assert (JOB["apiVersion"], JOB["kind"]) == ("ray.io/v1", "RayJob")


@pytest.mark.parametrize("mistake", ["typo", "replicas", "mount"])
def test_the_validation_catches_mistakes(mistake):
    job = copy.deepcopy(JOB)
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    container = group["template"]["spec"]["containers"][0]
    if mistake == "typo":
        container["volumeMount"] = container.pop("volumeMounts")
    elif mistake == "replicas":
        group["maxReplicas"] = "eight"
    else:
        del container["volumeMounts"][0]["mountPath"]
    assert list(VALIDATOR.iter_errors(job))


def _keys_and_strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys_and_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys_and_strings(item)
    elif isinstance(node, str):
        yield node


def test_no_pod_installs_anything_at_start():
    found = list(_keys_and_strings(JOB))
    assert not [k for k in found if k.startswith("runtimeEnv")]  # no runtime environment: no pip, conda, uv
    assert not [s for s in found if re.search(r"\b(pip|conda|uv|apt-get)\b", s)]
    assert not [c for g in GROUPS for c in g["template"]["spec"]["containers"] if "command" in c or "args" in c]
    images = {c["image"] for g in GROUPS for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1  # every pod runs the image built from cluster/Dockerfile


def test_the_image_is_rays_gpu_image_with_medguna_installed_at_build_time():
    (base,) = re.findall(r"^FROM (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert base == CLUSTER["docker"]["image"] == f"rayproject/ray:{SPEC['rayVersion']}-py311-gpu"
    ray_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("ray["))
    assert f">={SPEC['rayVersion'].rsplit('.', 1)[0]}" in ray_pin
    # The dependencies are pyproject.toml's own list, then medguna itself (editable: studies/conf
    # stays next to the package), with the study's files in the image.
    assert "tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']" in DOCKERFILE
    assert "pip install --no-cache-dir --no-deps -e ." in DOCKERFILE
    for folder in ("medguna", "studies"):
        assert f"COPY --chown=ray:users {folder} ./{folder}" in DOCKERFILE


def test_every_pod_mounts_the_data_read_only_and_the_storage():
    for group in GROUPS:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]}
        assert volumes == {"medguna-data": {"claimName": "medguna-data", "readOnly": True},
                           "medguna-runs": {"claimName": "medguna-runs"}}
        for container in pod["containers"]:
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["medguna-data"] == {"name": "medguna-data", "mountPath": DATA_MOUNT, "readOnly": True}
            assert mounts["medguna-runs"]["mountPath"] == RUNS_MOUNT and not mounts["medguna-runs"].get("readOnly")


def test_the_entrypoint_names_data_checkpoint_and_storage_on_those_volumes_and_checks_them_first():
    words, cfg = _entrypoint_config()
    assert words[:6] == ["python", "-m", "medguna.study.preflight", "--run", "--study", "chestxray"]
    # KubeRay pastes the entrypoint into its submitter's shell command line: plain words only.
    assert not re.search(r"[;&|$`<>()\\]", JOB["spec"]["entrypoint"])
    roots = {name: cfg.data.roots.get(name) for name in cfg.study.datasets}
    assert all(root and root.startswith(f"{DATA_MOUNT}/datasets/") for root in roots.values()), roots
    assert cfg.model.checkpoint.startswith(f"{DATA_MOUNT}/checkpoints/")
    assert cfg.model.tokenizer.startswith(f"{DATA_MOUNT}/checkpoints/")
    assert cfg.storage.path.startswith(RUNS_MOUNT) and cfg.resources.address == "auto"
    checks = check_commands(cfg)
    assert [c[:2] for c in checks] == [*(["data", name] for name in cfg.study.datasets), ["check-model", "--checkpoint"]]
    assert all("--verify" in c for c in checks[:-1])


def test_worker_groups_are_cluster_yamls_gpu_node_types_with_gpu_requests_and_limits():
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
        resources = group["template"]["spec"]["containers"][0]["resources"]
        for bound in ("requests", "limits"):
            assert (int(resources[bound]["cpu"]), int(resources[bound]["nvidia.com/gpu"])) == (cpus, gpus)
    assert groups == shapes
    assert SPEC["enableInTreeAutoscaling"] is True


def test_the_study_would_run_as_many_trials_as_the_groups_allow():
    # The entrypoint states the groups' GPUs at maxReplicas (8 x 1 + 2 x 4), which sets the limit.
    gpus = sum(int(g["rayStartParams"]["num-gpus"]) * g["maxReplicas"] for g in SPEC["workerGroupSpecs"])
    _, cfg = _entrypoint_config()
    assert cfg.resources.max_cluster_gpus == gpus == 16
    head_only = [NodeGroup({"CPU": 4.0, "GPU": 0.0}, 1)]
    assert choose_concurrency(cfg.resources, head_only).limit == 16
