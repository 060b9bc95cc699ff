"""docs/cluster.md stays truthful to cluster.yaml and to the study command's override names."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from medguna.data.datasets import DATASETS

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "cluster.md").read_text()
CONFIG = yaml.safe_load((REPO / "cluster.yaml").read_text())
CONTAINER_HOME = "/home/ray"  # the ray user's home in rayproject/ray images: "~" on the nodes

STUDY_OVERRIDES = {
    "storage.path", "storage.cache_dir", "model.checkpoint", "model.tokenizer",
    "resources.gpus_per_trial", "resources.cpus_per_trial", "resources", "resources.address",
} | {f"data.roots.{name}" for name in DATASETS}


def _study_overrides() -> list[tuple[str, str]]:
    """key=value pairs of every `studies/run.py` command line in the document."""
    pairs = []
    for command in re.findall(r"studies/run\.py(.*?)(?:```|'|$)", DOC, flags=re.DOTALL):
        pairs += re.findall(r"(?<![\w-])([a-z_][\w.]*)=(\S+)", command.replace("\\\n", " "))
    return pairs


def test_study_commands_use_only_real_override_names() -> None:
    pairs = _study_overrides()
    assert len(pairs) >= 10
    unknown = {key for key, _ in pairs} - STUDY_OVERRIDES
    assert not unknown, f"docs/cluster.md uses override names the study does not have: {unknown}"


def test_data_and_checkpoint_paths_are_where_the_yaml_syncs_them() -> None:
    commands = " ".join(CONFIG["setup_commands"])
    for key, value in _study_overrides():
        if key.startswith("data.roots."):
            assert value.startswith(f"{CONTAINER_HOME}/medguna_data/datasets/"), value
            assert "~/medguna_data/datasets" in commands
        if key in ("model.checkpoint", "model.tokenizer"):
            assert value.startswith(f"{CONTAINER_HOME}/medguna_data/checkpoints/"), value
            assert "~/medguna_data/checkpoints" in commands


def test_bucket_storage_and_uploads_match_the_yaml_bucket() -> None:
    bucket_line = next(c for c in CONFIG["setup_commands"] if "MEDGUNA_S3=" in c)
    bucket_prefix = re.search(r"MEDGUNA_S3=(s3://\S+?)'", bucket_line).group(1)
    storage = [value for key, value in _study_overrides() if key == "storage.path"]
    assert storage and all(
        v.startswith((bucket_prefix, "$MEDGUNA_S3")) for v in storage
    )
    for folder in ("datasets", "checkpoints"):
        assert f"{bucket_prefix}/{folder}/" in DOC


def test_node_types_image_and_profile_named_in_the_doc_exist() -> None:
    for name, node_type in CONFIG["available_node_types"].items():
        assert f"`{name}`" in DOC
        assert node_type["node_config"]["InstanceType"] in DOC
        assert node_type["node_config"]["IamInstanceProfile"]["Name"] in DOC
    assert CONFIG["docker"]["image"] in DOC
    assert list(CONFIG["file_mounts"]) == ["~/medguna"] and "`~/medguna`" in DOC
    assert ("cache_stopped_nodes: true" in DOC) is CONFIG["provider"]["cache_stopped_nodes"]


def test_the_walkthrough_goes_from_up_to_down() -> None:
    steps = ["ray up cluster.yaml", "ray job submit", "ray attach cluster.yaml",
             "tensorboard --logdir s3://", "ray down cluster.yaml"]
    positions = [DOC.index(step) for step in steps]
    assert positions == sorted(positions)


def _section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    return DOC[start:DOC.index("\n## ", start + 1)]


def test_the_slurm_section_names_exactly_the_variables_the_script_reads() -> None:
    script = (REPO / "cluster" / "slurm.sbatch").read_text()
    read = set(re.findall(r"\$\{(MEDGUNA_\w+)", script))
    named = set(re.findall(r"MEDGUNA_\w+", _section("SLURM"))) - {"MEDGUNA_SHARED_STORAGE_ROOTS"}
    assert named == read
    assert "MEDGUNA_SHARED_STORAGE_ROOTS" in (REPO / "medguna" / "study" / "storage.py").read_text()


def test_the_kuberay_section_names_the_manifests_volumes_and_image_recipe() -> None:
    job = yaml.safe_load((REPO / "cluster" / "kuberay-rayjob.yaml").read_text())
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    section = _section("Kubernetes (KubeRay)")
    for mount in head["containers"][0]["volumeMounts"]:
        assert f"`{mount['name']}`" in section and f"`{mount['mountPath']}`" in section
    assert "cluster/Dockerfile" in section and "runtimeEnvYAML" in section
    for route in ("`ray up cluster.yaml`", "`cluster/slurm.sbatch`", "`cluster/kuberay-rayjob.yaml`"):
        assert route in DOC.split("\n## ", 1)[0]  # the table of routes at the top
