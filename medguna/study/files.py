"""A study's files, at a local path or at a URI (`s3://`, `gs://`, `abfs://`, `file://`) alike.

Ray Tune writes a study at a URI through pyarrow's filesystem layer, and so does everything here.
Local files a later run reads are published whole (medguna.atomic); an object store replaces an
object whole on its own. The analysis reads local folders, so the end-of-study report reads a local
mirror of the files it needs (a few KB per trial: checkpoints and TensorBoard events stay in the
store) and its output is copied back next to the study. `file://` takes the URI path, which is how
a bucket-backed study is checked on one machine.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from medguna.atomic import write_bytes_atomic
from medguna.results import (
    COMPLETE_MARKER,
    ERROR_FILE,
    OPTUNA_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    STUDY_FILE,
)

URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")

# What the analysis reads of a study, plus the runner's markers.
REPORT_INPUT_FILES = frozenset({STUDY_FILE, PARAMS_FILE, RESULT_FILE, ERROR_FILE, OPTUNA_FILE, COMPLETE_MARKER})


def is_uri(path: str) -> bool:
    """`scheme://...` (a bucket or file:// URI) rather than a local path."""
    return URI.match(str(path).strip()) is not None


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_uri(base) else str(Path(base, *parts))


def filesystem(path: str):
    """pyarrow's filesystem for `path` and the path inside it."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(path) if is_uri(path) else (pafs.LocalFileSystem(), str(path))


def exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when there is no file."""
    import pyarrow.fs as pafs

    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(inner) as f:
        return f.read()


def read_text(path: str) -> str | None:
    """The file's text, or None when there is no file."""
    data = read_bytes(path)
    return None if data is None else data.decode()


def write_bytes(path: str, data: bytes) -> None:
    """Publish `data` at `path` whole, creating its folder."""
    if not is_uri(path):
        write_bytes_atomic(path, data)
        return
    fs, inner = filesystem(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def copy_file(local: Path, dest: str) -> None:
    write_bytes(dest, Path(local).read_bytes())


def list_names(folder: str) -> list[str]:
    """The names of the entries directly in `folder`, sorted; none if it is absent."""
    import pyarrow.fs as pafs

    fs, inner = filesystem(folder)
    return sorted(e.base_name for e in fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True)))


def remove_tree(path: str) -> bool:
    """Delete everything under `path`; False if there was nothing."""
    if not exists(path):
        return False
    fs, inner = filesystem(path)
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
        with fs.open_input_stream(entry.path) as f:
            write_bytes_atomic(local_dir.joinpath(*relative.parts), f.read())
    return local_dir


def upload_tree(local_dir: Path, uri: str) -> None:
    """Copy every file under `local_dir` to `uri`, keeping the layout."""
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        copy_file(path, join(uri, *path.relative_to(local_dir).parts))
