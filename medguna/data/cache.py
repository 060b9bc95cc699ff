"""Decode-once image cache: a memory-mapped uint8 .npy per (images, preprocessing, size).

Beside each `<entry>.npy` a `<entry>.npy.json` records the key material (the images' paths,
sizes and mtimes, the preprocessing, the size) and the sha256 of the .npy. An entry is checked
against it the first time a process opens it (and again whenever the file changes on disk): a
changed or foreign entry is rebuilt, and said so once, instead of being used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medguna.atomic import write_json_atomic
from medguna.data.images import channels_of, check_preprocessing, load_preprocessed, load_whole
from medguna.data.rebuilds import note_rebuild
from medguna.data.verify import unreadable_message
from medguna.errors import DataError
from medguna.hashing import file_sha256

CACHE_FORMAT_VERSION = 1  # bump when preprocessing code changes what a key's pixels are


def _key_material(paths: Sequence[str | Path], preprocessing: str, size: int, high_bit_depth: str = "rescale",
                  whole: bool = False) -> dict:
    """What a key is built from: the (path, size in bytes, mtime_ns) list, the preprocessing, the output
    size and (when not the default) how high-bit-depth images become 8 bits."""
    check_preprocessing(preprocessing)
    entries = []
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise DataError(f"image file not found: {path}") from None
        entries.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    fields = {"version": CACHE_FORMAT_VERSION, "preprocessing": preprocessing, "size": size, "images": entries}
    if high_bit_depth != "rescale":  # the default keeps its earlier keys, so existing caches stay valid
        fields["high_bit_depth"] = high_bit_depth
    if whole:
        fields["whole"] = True
    return fields


def _key_of(material: dict) -> str:
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


def cache_key(paths: Sequence[str | Path], preprocessing: str, size: int, high_bit_depth: str = "rescale",
              whole: bool = False) -> str:
    """sha256 of the key material (see _key_material)."""
    return _key_of(_key_material(paths, preprocessing, size, high_bit_depth, whole))


def cache_file(paths: Sequence[str | Path], preprocessing: str, size: int, cache_dir: str | Path,
               high_bit_depth: str = "rescale", whole: bool = False) -> Path:
    """Where the cache entry for these images lives (whole images: `images_whole_...`)."""
    key = cache_key(paths, preprocessing, size, high_bit_depth, whole)
    return _entry_path(key, preprocessing, size, cache_dir, whole)


def _entry_path(key: str, preprocessing: str, size: int, cache_dir: str | Path, whole: bool = False) -> Path:
    kind = "images_whole" if whole else "images"
    return Path(cache_dir) / f"{kind}_{preprocessing}_{size}_{key[:24]}.npy"


def sizes_file(images_file: Path) -> Path:
    """The (N, 2) original (height, width) of a whole-image entry, stored beside it."""
    return images_file.with_suffix(".sizes.npy")


def record_file(entry: Path) -> Path:
    """The entry's record: its key material and checksum."""
    return entry.with_name(entry.name + ".json")


_VERIFIED: set[tuple] = set()  # (path, inode, size, mtime) of entries this process has checked
_REPORTED: set[tuple] = set()


def _signature(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _entry_problem(entry: Path, key: str) -> str:
    """What is wrong with the entry, or "" if it matches its record (checked once per version)."""
    if _signature(entry) in _VERIFIED:
        return ""
    try:
        record = json.loads(record_file(entry).read_text())
    except (OSError, ValueError):
        return "without a readable record of what it holds"
    if not isinstance(record, dict) or record.get("key") != key or _key_of(record.get("material")) != key:
        return "recorded under another key"
    if record.get("sha256") != file_sha256(entry):
        return "changed on disk since it was written (checksum mismatch)"
    _VERIFIED.add(_signature(entry))
    return ""


def report_rebuild(entry: Path, problem: str) -> None:
    try:
        seen = _signature(entry)
    except OSError:
        seen = (str(entry),)
    if seen not in _REPORTED:  # once per bad version of the file, however many trials meet it
        _REPORTED.add(seen)
        note_rebuild(entry.parent, f"image cache entry {entry} is {problem}: rebuilding it")


def _open_read_only(path: Path) -> torch.Tensor:
    array = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        # torch warns that the array is not writable; read-only is the point (no copy per trial).
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _fill(
    target: np.ndarray, paths: Sequence[str | Path], preprocessing: str, size: int, progress: bool,
    high_bit_depth: str = "rescale",
    sizes: np.ndarray | None = None,
) -> None:
    def decode_into(index: int) -> str | None:
        try:
            if sizes is None:
                target[index] = load_preprocessed(paths[index], preprocessing, size, high_bit_depth)
            else:
                target[index], sizes[index] = load_whole(paths[index], preprocessing, size, high_bit_depth)
        except DataError as error:
            return str(error)  # keep decoding: the error names every bad file, not the first
        return None

    # PIL releases the GIL while decoding and resizing, so threads give real parallelism here.
    workers = min(8, os.cpu_count() or 1, len(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        bar = tqdm(total=len(paths), desc=f"decoding images ({preprocessing}, {size}px)",
                   unit="img", disable=not progress)
        problems = []
        with bar:
            for problem in pool.map(decode_into, range(len(paths))):
                bar.update(1)
                if problem is not None:
                    problems.append(problem)
    if problems:
        raise DataError(unreadable_message(problems))


def build_image_cache(
    paths: Sequence[str | Path],
    preprocessing: str,
    size: int,
    cache_dir: str | Path,
    *,
    progress: bool = True,
    high_bit_depth: str = "rescale",
    whole: bool = False,
) -> torch.Tensor:
    """(N, C, size, size) uint8 tensor of the preprocessed images, memory-mapped read-only.

    A hit only stats the files and maps the .npy. A miss decodes in a thread pool into a temporary
    file in `cache_dir` and publishes it with os.replace, so concurrent builders of the same entry
    each write their own temporary file and the last rename wins with an identical, complete file.
    """
    channels = channels_of(preprocessing)
    if not paths:
        return torch.empty((0, channels, size, size), dtype=torch.uint8)
    material = _key_material(paths, preprocessing, size, high_bit_depth, whole)
    key = _key_of(material)
    target_path = _entry_path(key, preprocessing, size, cache_dir, whole)
    if target_path.is_file() and (not whole or sizes_file(target_path).is_file()):
        try:
            problem = _entry_problem(target_path, key)
        except OSError:
            problem = "unreadable"  # removed or replaced while being checked
        if not problem:
            try:
                return _open_read_only(target_path)
            except (OSError, ValueError):
                problem = "unreadable"  # a damaged entry (e.g. disk full earlier)
        report_rebuild(target_path, problem)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target_path.parent, prefix=f".{target_path.stem}.", suffix=".npy")
    os.close(descriptor)
    try:
        array = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.uint8, shape=(len(paths), channels, size, size)
        )
        sizes = np.zeros((len(paths), 2), dtype=np.int64) if whole else None
        _fill(array, paths, preprocessing, size, progress, high_bit_depth, sizes)
        array.flush()
        del array
        if sizes is not None:  # published before the images, so an entry never lacks its sizes
            sizes_temporary = Path(temporary).with_suffix(".sizes.npy")
            np.save(sizes_temporary, sizes)
            os.replace(sizes_temporary, sizes_file(target_path))
        # The record goes first: a reader that sees the new .npy then finds its record.
        _write_record(target_path, {"key": key, "sha256": file_sha256(Path(temporary)), "material": material})
        os.replace(temporary, target_path)
        _VERIFIED.add(_signature(target_path))  # just hashed: no need to read it again in this process
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        Path(temporary).with_suffix(".sizes.npy").unlink(missing_ok=True)
        raise
    return _open_read_only(target_path)


def whole_image_sizes(paths: Sequence[str | Path], preprocessing: str, size: int, cache_dir: str | Path,
                      high_bit_depth: str = "rescale") -> torch.Tensor:
    """(N, 2) original (height, width) of a whole-image entry built by build_image_cache(whole=True)."""
    path = sizes_file(cache_file(paths, preprocessing, size, cache_dir, high_bit_depth, whole=True))
    return torch.from_numpy(np.load(path))


def _write_record(entry: Path, record: dict) -> None:
    write_json_atomic(record_file(entry), record, indent=None)
