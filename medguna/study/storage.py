"""Where a study writes its results, and whether every node of a Ray cluster can reach it.

Ray Tune writes each trial's results and checkpoints from the node that runs the trial. On a
cluster of more than one node, a node-local directory scatters a study over several disks:
resume and analysis then see only part of it, and Ray cannot tell (a one-machine test cluster
shares one disk). So the study checks the storage path against the cluster before it starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medguna.errors import ConfigError
from medguna.study.autoscaler import autoscaler_max_nodes
from medguna.study.files import URI

REMOTE_URI_SCHEMES: tuple[str, ...] = ("s3", "gs", "abfs")
"""Object-store URI schemes Ray Tune (through pyarrow) writes to directly; left untouched."""

DEFAULT_SHARED_MOUNTS: tuple[str, ...] = ("/mnt", "/shared", "/efs", "/nfs")
"""Directories that, by convention on our clusters, hold filesystems every node mounts."""

SHARED_ROOTS_ENV = "MEDGUNA_SHARED_STORAGE_ROOTS"
"""Environment variable: more directories (separated by `:`) that every node of the cluster
sees, for a shared filesystem mounted elsewhere than DEFAULT_SHARED_MOUNTS or not recognisable
from /proc/mounts (a bind mount of NFS, a one-machine test cluster whose nodes share one disk).
It is the user's statement that the path is shared; nothing can verify it from one node."""

NETWORK_FILESYSTEM_TYPES: frozenset[str] = frozenset(
    {"nfs", "nfs4", "lustre", "efs", "cifs", "smb3", "ceph", "glusterfs", "gpfs", "beegfs"}
)
"""Filesystem types (third column of /proc/mounts) that are shared between machines."""

SHARED_FUSE_PREFIX = "fuse."
"""FUSE filesystems (s3fs, gcsfuse, juicefs, sshfs, ...) are named `fuse.<driver>`."""

PROC_MOUNTS = "/proc/mounts"

# "s3:/bucket" or "s3:bucket": a URI with a slash missing would otherwise become a local folder
# named "s3:" under the working directory, which is the silent failure this module exists to stop.
_MALFORMED_REMOTE = re.compile(r"^(?P<scheme>" + "|".join(REMOTE_URI_SCHEMES) + r"):/?(?!/)")
_MOUNTS_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of a mount table: where a filesystem is mounted and its type."""

    mount_point: str
    filesystem_type: str


def is_remote_uri(storage_path: str) -> bool:
    """True for an `s3://`, `gs://` or `abfs://` URI (the shared stores Ray writes to)."""
    match = URI.match(storage_path.strip())
    return match is not None and match["scheme"].lower() in REMOTE_URI_SCHEMES


def resolve_storage(storage_path: str) -> str:
    """Return the storage location in the form every node and Ray agree on.

    Remote URIs (`s3://`, `gs://`, `abfs://`) come back unchanged. Local paths get `~` expanded
    and are made absolute, so that a later resume from another working directory finds the
    same study. `file:///abs/path` stays a URI (normalised): the study then reads and writes it
    through pyarrow's filesystem layer, as it does a bucket, which is how a bucket-backed study
    is checked on one machine.
    """
    if not isinstance(storage_path, str) or not storage_path.strip():
        raise ConfigError(
            f"storage.path is empty ({storage_path!r}): set it to a directory "
            "(storage.path=./medguna_runs) or a bucket URI (storage.path=s3://<bucket>/medguna)."
        )
    text = storage_path.strip()
    malformed = _MALFORMED_REMOTE.match(text)
    if malformed and not text.startswith(f"{malformed['scheme']}://"):
        scheme = malformed["scheme"]
        fixed = f"{scheme}://" + text[len(scheme) + 1 :].lstrip("/")
        raise ConfigError(
            f"storage.path={text!r} looks like a {scheme} URI with a slash missing; "
            f"write it as storage.path={fixed}."
        )
    uri = URI.match(text)
    if uri is None:
        return os.path.abspath(os.path.expanduser(text))
    scheme = uri["scheme"].lower()
    if scheme == "file":
        local = uri["rest"]
        if not local.startswith("/"):
            raise ConfigError(
                f"storage.path={text!r}: a file:// URI needs an absolute path "
                "(file:///abs/path), or write the path without file://."
            )
        return "file://" + os.path.abspath(local)
    if scheme not in REMOTE_URI_SCHEMES:
        supported = ", ".join(f"{name}://" for name in REMOTE_URI_SCHEMES)
        raise ConfigError(
            f"storage.path={text!r} uses the unsupported scheme '{scheme}://'; "
            f"use a local or shared directory, or one of {supported}."
        )
    if not uri["rest"] or uri["rest"].startswith("/"):
        raise ConfigError(
            f"storage.path={text!r} names no bucket; write it as "
            f"storage.path={scheme}://<bucket>/medguna."
        )
    return text


def read_mount_table(mounts_file: str | os.PathLike[str] = PROC_MOUNTS) -> list[MountEntry]:
    """Parse a /proc/mounts-style table; an unreadable table reads as empty (not Linux)."""
    try:
        lines = Path(mounts_file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # The kernel writes a space in a mount point as \040 (octal), tab as \011, and so on.
        mount_point = _MOUNTS_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[1])
        entries.append(MountEntry(mount_point=mount_point, filesystem_type=fields[2]))
    return entries


def is_network_filesystem(filesystem_type: str) -> bool:
    """True for filesystem types that several machines mount at once (nfs, lustre, fuse.*...)."""
    name = filesystem_type.lower()
    return name in NETWORK_FILESYSTEM_TYPES or name.startswith(SHARED_FUSE_PREFIX)


def _is_under(path: str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


def filesystem_of(path: str, mounts: Iterable[MountEntry]) -> MountEntry | None:
    """The mount that holds `path`: the deepest mount point above it (the last one wins a tie,
    as the kernel stacks a later mount over an earlier one at the same point)."""
    holder: MountEntry | None = None
    for entry in mounts:
        if _is_under(path, entry.mount_point) and (
            holder is None or len(entry.mount_point) >= len(holder.mount_point)
        ):
            holder = entry
    return holder


def declared_shared_roots() -> list[str]:
    """The directories listed in $MEDGUNA_SHARED_STORAGE_ROOTS (empty entries skipped)."""
    value = os.environ.get(SHARED_ROOTS_ENV, "")
    roots = [entry.strip() for entry in value.split(os.pathsep) if entry.strip()]
    for root in roots:
        if not os.path.isabs(os.path.expanduser(root)):
            raise ConfigError(
                f"{SHARED_ROOTS_ENV}={value!r} lists {root!r}, which is not an absolute path; "
                f"list absolute directories that every node mounts, separated by "
                f"'{os.pathsep}' (e.g. {SHARED_ROOTS_ENV}=/data/shared{os.pathsep}/scratch/team)."
            )
    return [os.path.expanduser(root) for root in roots]


def _validated_shared_mounts(shared_mounts: Sequence[str]) -> list[str]:
    if isinstance(shared_mounts, str):
        # A bare string would be iterated letter by letter: "/mnt" would accept every path.
        shared_mounts = (shared_mounts,)
    mounts = []
    for mount in [*shared_mounts, *declared_shared_roots()]:
        if not os.path.isabs(mount):
            raise ConfigError(
                f"shared mount {mount!r} is not an absolute path; list directories like "
                "/mnt/shared that every node of the cluster mounts."
            )
        mounts.append(os.path.normpath(mount))
    return mounts


def check_storage_for_cluster(
    storage_path: str,
    num_nodes: int,
    *,
    shared_mounts: Sequence[str] = DEFAULT_SHARED_MOUNTS,
    mounts_file: str | os.PathLike[str] = PROC_MOUNTS,
) -> None:
    """Refuse a node-local storage path when the cluster has more than one node.

    Accepted: any path on a one-node cluster; `s3://`, `gs://`, `abfs://` URIs; paths under one
    of `shared_mounts` or of the directories in $MEDGUNA_SHARED_STORAGE_ROOTS (the user's
    statement that those are shared); paths whose filesystem in `mounts_file` is a network
    filesystem. Raises ConfigError naming what to set instead.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive int (alive Ray nodes), got {num_nodes!r}")
    resolved = resolve_storage(storage_path)
    # A file:// URI is a path on this node's filesystem like any other.
    resolved = resolved.removeprefix("file://")
    mounts = _validated_shared_mounts(shared_mounts)
    if num_nodes == 1 or is_remote_uri(resolved):
        return
    # Check the path as written and where its symlinks lead: either may be the shared one.
    candidates = {resolved, os.path.realpath(resolved)}
    if any(_is_under(path, mount) for path in candidates for mount in mounts):
        return
    holder = filesystem_of(os.path.realpath(resolved), read_mount_table(mounts_file))
    if holder is not None and is_network_filesystem(holder.filesystem_type):
        return
    where = (
        f"on the {holder.filesystem_type} filesystem mounted at {holder.mount_point}"
        if holder is not None
        else "not on any known shared filesystem"
    )
    raise ConfigError(
        f"storage.path={resolved} is a node-local directory ({where}), but the Ray cluster "
        f"has {num_nodes} nodes: each trial would write its results and checkpoints to the "
        "disk of the node it ran on, and resume and analysis would see only part of the "
        "study. Set storage.path=s3://<bucket>/medguna (or gs://, abfs://), or a directory "
        "every node mounts, like storage.path=/mnt/shared/medguna (accepted: paths under "
        f"{', '.join(mounts) or '(no shared mounts configured)'}, or on an nfs, lustre, efs, "
        f"cifs or fuse.* mount). If the directory is in fact shared by every node, declare "
        f"its shared root in the environment: {SHARED_ROOTS_ENV}=/path/to/shared/root."
    )


def count_alive_nodes() -> int:
    """Number of alive nodes in the Ray cluster this process is connected to."""
    import ray  # imported here: resolving a path should not pay for starting Ray's imports

    if not ray.is_initialized():
        raise RuntimeError(
            "count_alive_nodes() needs a connected Ray: call ray.init(...) before it."
        )
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def expected_cluster_nodes(autoscaler_config: dict | None) -> int:
    """Nodes the study must plan for: the alive ones, or the autoscaler's limit if larger.

    An autoscaling cluster starts a study with the head alone (GPU workers have min_workers 0)
    and grows once trials ask for GPUs, so the count of alive nodes alone would accept a
    node-local storage path that the workers launched a minute later cannot see.
    """
    alive = count_alive_nodes()
    limit = autoscaler_max_nodes(autoscaler_config)
    return max(alive, limit or 0)
