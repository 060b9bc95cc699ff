"""Storage resolution and the multi-node refusal, against real paths and mount tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medguna.errors import ConfigError
from medguna.study.storage import (
    MountEntry,
    check_storage_for_cluster,
    filesystem_of,
    is_network_filesystem,
    is_remote_uri,
    read_mount_table,
    resolve_storage,
)

MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/nvme0n1p1 / ext4 rw,relatime 0 0
/dev/nvme1n1 /mnt ext4 rw 0 0
fs-0123.efs.us-west-2.amazonaws.com:/ /home/ray/efs nfs4 rw,vers=4.1 0 0
lustre@tcp:/fsx /fsx lustre rw 0 0
s3fs /data/bucket fuse.s3fs rw 0 0
//server/share /home/ray/smb\\040share cifs rw 0 0
tmpfs /home/ray/efs/scratch tmpfs rw 0 0
"""


@pytest.fixture
def mounts_file(tmp_path: Path) -> Path:
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return path


# --- resolve_storage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["s3://my-bucket/medguna", "gs://bucket/a/b/", "abfs://container@account/runs"]
)
def test_remote_uris_are_left_as_they_are(uri: str) -> None:
    assert resolve_storage(uri) == uri
    assert is_remote_uri(uri)


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_storage("~/runs") == str(tmp_path / "runs")


def test_relative_path_becomes_absolute_and_normalised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage("./medguna_runs/") == str(tmp_path / "medguna_runs")
    assert resolve_storage("a/../b") == str(tmp_path / "b")
    assert not is_remote_uri(resolve_storage("./medguna_runs"))


def test_file_uri_stays_a_uri_and_is_checked_as_the_local_path_it_names() -> None:
    # Kept a URI so a study on it takes the same pyarrow path as a bucket (tests/study/test_uri_storage.py).
    assert resolve_storage("file:///srv/runs/") == "file:///srv/runs"
    with pytest.raises(ConfigError, match="node-local"):
        check_storage_for_cluster("file:///srv/runs", 2, shared_mounts=(), mounts_file="/nonexistent")
    check_storage_for_cluster("file:///srv/runs", 2, shared_mounts=("/srv",), mounts_file="/nonexistent")


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_storage_path_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"storage\.path is empty.*storage\.path=s3://"):
        resolve_storage(bad)


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [("s3:/my-bucket/medguna", "s3://my-bucket/medguna"), ("gs:bucket", "gs://bucket")],
)
def test_uri_with_a_missing_slash_is_refused_with_the_fix(bad: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match="slash missing") as info:
        resolve_storage(bad)
    assert f"storage.path={suggestion}" in str(info.value)


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unsupported scheme 'http://'.*s3://, gs://, abfs://"):
        resolve_storage("http://example.com/runs")


@pytest.mark.parametrize("bad", ["s3://", "s3:///medguna"])
def test_uri_without_bucket_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"names no bucket.*storage\.path=s3://<bucket>/medguna"):
        resolve_storage(bad)


def test_relative_file_uri_is_refused() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        resolve_storage("file://runs")


# --- mount table -----------------------------------------------------------------------------


def test_mount_table_is_parsed_with_escapes(mounts_file: Path) -> None:
    table = read_mount_table(mounts_file)
    assert len(table) == 8
    assert table[1] == MountEntry("/", "ext4")
    assert table[6] == MountEntry("/home/ray/smb share", "cifs")


def test_missing_mount_table_reads_as_empty(tmp_path: Path) -> None:
    assert read_mount_table(tmp_path / "absent") == []


def test_deepest_mount_holds_the_path(mounts_file: Path) -> None:
    table = read_mount_table(mounts_file)
    assert filesystem_of("/home/ray/efs/runs", table) == MountEntry("/home/ray/efs", "nfs4")
    assert filesystem_of("/home/ray/efs/scratch/x", table) == MountEntry(
        "/home/ray/efs/scratch", "tmpfs"
    )
    # "/home/ray/efsx" shares a string prefix with the EFS mount but is not inside it.
    assert filesystem_of("/home/ray/efsx", table) == MountEntry("/", "ext4")


@pytest.mark.parametrize(
    ("fstype", "shared"),
    [("nfs", True), ("nfs4", True), ("lustre", True), ("efs", True), ("cifs", True),
     ("fuse.s3fs", True), ("fuse.gcsfuse", True), ("ext4", False), ("xfs", False),
     ("tmpfs", False), ("overlay", False)],
)
def test_network_filesystem_types(fstype: str, shared: bool) -> None:
    assert is_network_filesystem(fstype) is shared


# --- check_storage_for_cluster ---------------------------------------------------------------


def test_single_node_accepts_a_local_path(mounts_file: Path) -> None:
    check_storage_for_cluster("/home/ray/medguna_runs", 1, mounts_file=mounts_file)


def test_multi_node_refuses_a_local_path_and_says_what_to_set(mounts_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_storage_for_cluster("/home/ray/medguna_runs", 3, mounts_file=mounts_file)
    message = str(info.value)
    assert "storage.path=/home/ray/medguna_runs is a node-local directory" in message
    assert "on the ext4 filesystem mounted at /" in message
    assert "has 3 nodes" in message
    assert "storage.path=s3://<bucket>/medguna" in message
    assert "/mnt/shared" in message


def test_multi_node_refuses_a_relative_path_by_its_absolute_form(
    mounts_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"storage.path={tmp_path}/medguna_runs "):
        check_storage_for_cluster("medguna_runs", 2, mounts_file=mounts_file)


def test_multi_node_refuses_local_path_without_mount_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not on any known shared filesystem"):
        check_storage_for_cluster("/home/ray/runs", 2, mounts_file=tmp_path / "absent")


@pytest.mark.parametrize("uri", ["s3://bucket/medguna", "gs://bucket/medguna", "abfs://c@a/m"])
def test_multi_node_accepts_remote_uris(uri: str, mounts_file: Path) -> None:
    check_storage_for_cluster(uri, 8, mounts_file=mounts_file)


@pytest.mark.parametrize("path", ["/mnt/shared/medguna", "/shared/runs", "/efs", "/nfs/a/b"])
def test_multi_node_accepts_default_shared_mounts(path: str, tmp_path: Path) -> None:
    check_storage_for_cluster(path, 4, mounts_file=tmp_path / "absent")


def test_shared_mount_prefix_matches_whole_components(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        check_storage_for_cluster("/mntx/runs", 2, mounts_file=tmp_path / "absent")


def test_configured_shared_mounts_replace_the_defaults(tmp_path: Path) -> None:
    check_storage_for_cluster(
        "/cluster/home/runs", 2, shared_mounts=("/cluster",), mounts_file=tmp_path / "absent"
    )
    with pytest.raises(ConfigError, match=r"accepted: paths under /cluster,"):
        check_storage_for_cluster(
            "/mnt/runs", 2, shared_mounts=["/cluster"], mounts_file=tmp_path / "absent"
        )


def test_a_single_string_shared_mount_is_one_mount(tmp_path: Path) -> None:
    check_storage_for_cluster("/cluster/runs", 2, shared_mounts="/cluster",
                              mounts_file=tmp_path / "absent")
    with pytest.raises(ConfigError):
        check_storage_for_cluster("/c/runs", 2, shared_mounts="/cluster",
                                  mounts_file=tmp_path / "absent")


def test_relative_shared_mount_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"shared mount 'shared' is not an absolute path"):
        check_storage_for_cluster("/x", 2, shared_mounts=("shared",), mounts_file=tmp_path)


@pytest.mark.parametrize(
    "path", ["/home/ray/efs/medguna", "/fsx/runs", "/data/bucket/runs", "/home/ray/smb share/r"]
)
def test_multi_node_accepts_network_filesystems(path: str, mounts_file: Path) -> None:
    check_storage_for_cluster(path, 2, shared_mounts=(), mounts_file=mounts_file)


def test_local_mount_nested_in_a_network_mount_is_refused(mounts_file: Path) -> None:
    with pytest.raises(ConfigError, match="tmpfs filesystem mounted at /home/ray/efs/scratch"):
        check_storage_for_cluster("/home/ray/efs/scratch/runs", 2, mounts_file=mounts_file)


def test_symlink_into_a_shared_mount_is_followed(tmp_path: Path) -> None:
    shared = tmp_path / "nfs_export"
    shared.mkdir()
    link = tmp_path / "runs_link"
    os.symlink(shared, link)
    table = tmp_path / "mounts"
    table.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {shared} nfs4 rw 0 0\n")
    check_storage_for_cluster(str(link), 2, shared_mounts=(), mounts_file=table)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_bad_node_count_is_a_programming_error(bad: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_nodes must be a positive int"):
        check_storage_for_cluster("/x", bad, mounts_file=tmp_path)  # type: ignore[arg-type]


def test_bad_path_is_refused_before_the_node_count_matters(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="slash missing"):
        check_storage_for_cluster("s3:/bucket", 1, mounts_file=tmp_path)
