"""cluster.yaml passes Ray's own schema and config validation, offline; broken copies fail.

`ray up` has no dry run, so this is the check that the file would be accepted. Ray's
validation runs here exactly as `ray up` runs it before touching AWS: prepare_config (merge
with the AWS defaults, merge setup commands, check docker, fill per-type worker limits), then
validate_config (jsonschema against ray/autoscaler/ray-schema.json plus Ray's own rules).
"""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
SCHEMA_PATH = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
BUCKET_PLACEHOLDER = "s3://my-medguna-bucket/medguna"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must never reach AWS or the network: any connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access during config validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load_cluster_config() -> dict[str, Any]:
    with CLUSTER_YAML.open() as handle:
        return yaml.safe_load(handle)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before any cloud call; returns the prepared config."""
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(config, schema)  # the file as written, before defaults hide mistakes
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# --- the real file -----------------------------------------------------------------------------


def test_cluster_yaml_passes_ray_validation_offline_and_fast() -> None:
    start = time.perf_counter()
    prepared = validate(load_cluster_config())
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"validation took {elapsed:.2f} s"
    # prepare_config filled in what `ray up` would use: per-type limits and merged commands.
    node_types = prepared["available_node_types"]
    assert node_types["head_cpu"]["max_workers"] == 0
    assert node_types["gpu_1x_a10g"]["min_workers"] == 0
    assert prepared["head_setup_commands"] == prepared["setup_commands"]


def test_node_types_head_cpu_and_two_gpu_workers() -> None:
    config = load_cluster_config()
    node_types = config["available_node_types"]
    assert config["head_node_type"] == "head_cpu"
    assert node_types["head_cpu"]["resources"]["GPU"] == 0
    assert node_types["gpu_1x_a10g"]["resources"] == {"CPU": 8, "GPU": 1}
    assert node_types["gpu_4x_a10g"]["resources"] == {"CPU": 48, "GPU": 4}
    for name, node_type in node_types.items():
        for resource, amount in node_type["resources"].items():
            assert type(amount) is int, f"{name}.resources.{resource}={amount!r} is not an int"
        # Workers write results to the bucket themselves: every type needs the S3 profile.
        assert node_type["node_config"]["IamInstanceProfile"] == {"Name": "medguna-ray-node"}
    assert node_types["gpu_1x_a10g"]["max_workers"] + node_types["gpu_4x_a10g"]["max_workers"] == (
        config["max_workers"]
    )


def test_image_is_pinned_to_the_ray_medguna_requires() -> None:
    image = load_cluster_config()["docker"]["image"]
    assert image == f"rayproject/ray:{ray.__version__}-py311-gpu"
    pyproject = (REPO / "pyproject.toml").read_text()
    ray_requirement = next(
        Requirement(line.strip().strip('",'))
        for line in pyproject.splitlines()
        if line.strip().startswith('"ray[')
    )
    assert ray_requirement.specifier.contains(ray.__version__)


def test_setup_installs_this_project_from_its_synced_source() -> None:
    config = load_cluster_config()
    assert config["file_mounts"] == {"~/medguna": "."}
    assert ".gitignore" in config["rsync_filter"]
    commands = config["setup_commands"]
    torch_step = next(i for i, c in enumerate(commands) if c.startswith('pip install --quiet "torch'))
    project_step = commands.index("pip install --quiet -e ~/medguna")
    assert torch_step < project_step, "torch must be installed before the project keeps its build"
    assert any("torch.version.cuda" in command for command in commands)


def test_bucket_is_filled_in_at_one_place_and_data_is_synced_from_it() -> None:
    config = load_cluster_config()
    assert CLUSTER_YAML.read_text().count(BUCKET_PLACEHOLDER) == 1
    commands = config["setup_commands"]
    assert 'aws s3 sync --only-show-errors "$MEDGUNA_S3/datasets" ~/medguna_data/datasets' in (
        commands
    )
    assert 'aws s3 sync --only-show-errors "$MEDGUNA_S3/checkpoints" ~/medguna_data/checkpoints' in (
        commands
    )


# --- broken copies -----------------------------------------------------------------------------


def broken(edit) -> dict[str, Any]:
    config = load_cluster_config()
    edit(config)
    return config


@pytest.mark.parametrize(
    ("description", "edit", "complaint"),
    [
        ("a string where an integer belongs",
         lambda c: c["available_node_types"]["gpu_1x_a10g"].update(max_workers="8"),
         "is not of type 'integer'"),
        ("a string GPU count",
         lambda c: c["available_node_types"]["gpu_4x_a10g"]["resources"].update(GPU="4"),
         "is not of type 'integer'"),
        ("a fractional resource",
         lambda c: c["available_node_types"]["gpu_1x_a10g"]["resources"].update(GPU=0.5),
         "is not of type 'integer'"),
        ("a string global max_workers", lambda c: c.update(max_workers="ten"),
         "is not of type 'integer'"),
        ("an unknown top-level key", lambda c: c.update(max_worker=10),
         "Additional properties are not allowed ('max_worker'"),
        ("an unknown node-type key",
         lambda c: c["available_node_types"]["gpu_1x_a10g"].update(gpus=1),
         "Additional properties are not allowed ('gpus'"),
        ("an unknown docker key", lambda c: c["docker"].update(imagee="rayproject/ray"),
         "Additional properties are not allowed ('imagee'"),
        ("a node type without resources",
         lambda c: c["available_node_types"]["gpu_1x_a10g"].pop("resources"),
         "'resources' is a required property"),
        ("a setup command that is not a string",
         lambda c: c["setup_commands"].append(["pip", "install"]),
         "is not of type 'string'"),
    ],
)
def test_broken_copy_fails_the_schema(description: str, edit, complaint: str) -> None:
    with pytest.raises(jsonschema.ValidationError) as info:
        validate(broken(edit))
    assert complaint in str(info.value), description


def test_head_type_must_be_a_declared_node_type() -> None:
    with pytest.raises(ValueError, match="`head_node_type` must be one of"):
        validate(broken(lambda c: c.update(head_node_type="head")))


def test_min_workers_cannot_exceed_the_global_limit() -> None:
    def too_many(config: dict[str, Any]) -> None:
        config["available_node_types"]["gpu_1x_a10g"]["min_workers"] = 11

    with pytest.raises(ValueError, match="smaller than the sum of `min_workers`"):
        validate(broken(too_many))
