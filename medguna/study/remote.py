"""A study kept at a URI (`s3://`, `gs://`, `abfs://`, `file://`): remove it, mirror it, upload to it.

Ray Tune writes such a study through pyarrow's filesystem layer; the analysis reads local folders.
So the end-of-study report reads a local mirror of the files it needs (a few KB per trial:
checkpoints and TensorBoard events stay in the store) and its output is copied back next to the
study. The same code serves `file://`, which is how a bucket-backed study is checked on one machine.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from medguna.results import (
    COMPLETE_MARKER,
    ERROR_FILE,
    OPTUNA_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    STUDY_FILE,
)

# What the analysis reads of a study plus the runner's markers.
REPORT_INPUT_FILES = frozenset({STUDY_FILE, PARAMS_FILE, RESULT_FILE, ERROR_FILE, OPTUNA_FILE, COMPLETE_MARKER})


def filesystem(uri: str):
    """pyarrow's filesystem for `uri` and the path inside it."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, inner = filesystem(uri)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def remove_tree(uri: str) -> bool:
    """Delete everything under `uri`; False if there was nothing."""
    if not exists(uri):
        return False
    fs, inner = filesystem(uri)
    fs.delete_dir(inner)
    return True


def mirror_for_report(study_uri: str, local_dir: Path) -> Path:
    """Copy the files the report reads from `study_uri` into `local_dir` (same relative layout);
    files already there are replaced, so a mirror refreshes in place. Returns `local_dir`."""
    import pyarrow.fs as pafs

    fs, root = filesystem(study_uri)
    entries = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    for entry in entries:
        relative = PurePosixPath(entry.path).relative_to(PurePosixPath(root))
        if entry.type != pafs.FileType.File or entry.base_name not in REPORT_INPUT_FILES:
            continue
        if any(part.startswith("checkpoint_") for part in relative.parts):
            continue
        target = local_dir.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(entry.path) as f:
            target.write_bytes(f.read())
    return local_dir


def upload_tree(local_dir: Path, uri: str) -> None:
    """Copy every file under `local_dir` to `uri`, keeping the layout."""
    fs, root = filesystem(uri)
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        target = "/".join([root.rstrip("/"), *path.relative_to(local_dir).parts])
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(target) as f:
            f.write(path.read_bytes())
