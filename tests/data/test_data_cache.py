"""Decode-once image cache: keys, hits, atomic concurrent builds, memory-mapped read-only tensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import medguna.data.cache as cache_module
from medguna.data.cache import build_image_cache, cache_file, cache_key, record_file
from medguna.data.images import load_preprocessed
from medguna.errors import DataError


@pytest.fixture
def image_paths(synthetic_roots) -> list[str]:
    return sorted(str(p) for p in (synthetic_roots["guangzhou"] / "chest_xray" / "test").rglob("*.jpeg"))[:6]


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _entry_and_record(entry: Path) -> list[str]:
    return [entry.name, record_file(entry).name]


def test_build_then_hit(image_paths, tmp_path, monkeypatch):
    tensor = build_image_cache(image_paths, "medclip", 32, tmp_path, progress=False)
    assert tensor.shape == (6, 1, 32, 32) and tensor.dtype == torch.uint8
    for index in (0, 5):
        assert np.array_equal(tensor[index].numpy(), load_preprocessed(image_paths[index], "medclip", 32))
    assert _entries(tmp_path) == _entry_and_record(cache_file(image_paths, "medclip", 32, tmp_path))

    def must_not_decode(*args, **kwargs):
        raise AssertionError("a cache hit decoded an image")

    monkeypatch.setattr(cache_module, "load_preprocessed", must_not_decode)
    again = build_image_cache(image_paths, "medclip", 32, tmp_path, progress=False)
    assert torch.equal(again, tensor)


def test_cached_array_is_memory_mapped_read_only(image_paths, tmp_path):
    build_image_cache(image_paths, "clip", 16, tmp_path, progress=False)
    array = np.load(cache_file(image_paths, "clip", 16, tmp_path), mmap_mode="r")
    assert isinstance(array, np.memmap) and not array.flags.writeable
    assert array.shape == (6, 3, 16, 16)


def test_key_changes_with_file_preprocessing_size_and_order(image_paths):
    key = cache_key(image_paths, "medclip", 32)
    assert cache_key(image_paths, "medclip", 32) == key
    assert cache_key(image_paths, "clip", 32) != key
    assert cache_key(image_paths, "medclip", 64) != key
    assert cache_key(image_paths[::-1], "medclip", 32) != key
    stat = os.stat(image_paths[0])
    os.utime(image_paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        assert cache_key(image_paths, "medclip", 32) != key
    finally:
        os.utime(image_paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_threads_building_the_same_entry_leave_one_valid_file(image_paths, tmp_path):
    results: list[torch.Tensor] = []
    barrier = threading.Barrier(4)

    def build() -> None:
        barrier.wait()
        results.append(build_image_cache(image_paths, "medclip", 24, tmp_path, progress=False))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(torch.equal(r, results[0]) for r in results)
    assert _entries(tmp_path) == _entry_and_record(cache_file(image_paths, "medclip", 24, tmp_path))


def test_processes_building_the_same_entry_leave_one_valid_file(image_paths, tmp_path):
    script = textwrap.dedent(f"""
        import hashlib, sys
        from medguna.data.cache import build_image_cache
        tensor = build_image_cache({image_paths!r}, "clip", 24, {str(tmp_path)!r}, progress=False)
        print(hashlib.sha256(tensor.numpy().tobytes()).hexdigest())
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    digests = [worker.communicate(timeout=120)[0].strip() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert digests[0] == digests[1] and len(digests[0]) == 64
    assert _entries(tmp_path) == _entry_and_record(cache_file(image_paths, "clip", 24, tmp_path))
    reread = build_image_cache(image_paths, "clip", 24, tmp_path, progress=False)
    assert reread.shape == (6, 3, 24, 24)


def test_empty_list_and_missing_file(tmp_path):
    assert build_image_cache([], "clip", 8, tmp_path).shape == (0, 3, 8, 8)
    with pytest.raises(DataError, match="image file not found: .*nothing.png"):
        build_image_cache([str(tmp_path / "nothing.png")], "clip", 8, tmp_path)


def test_undecodable_image_fails_the_build_and_leaves_no_temporary(tmp_path):
    broken = tmp_path / "images" / "broken.jpeg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpeg"):
        build_image_cache([str(broken)], "medclip", 8, tmp_path / "cache", progress=False)
    assert _entries(tmp_path / "cache") == []


def test_an_entry_changed_in_place_or_recorded_under_another_key_is_rebuilt_and_said(
        image_paths, tmp_path, capsys):
    first = build_image_cache(image_paths, "medclip", 16, tmp_path, progress=False).clone()
    entry = cache_file(image_paths, "medclip", 16, tmp_path)
    cache_module._VERIFIED.clear()  # as a new worker process would: nothing checked yet
    data = bytearray(entry.read_bytes())
    data[-10:] = bytes(255 - b for b in data[-10:])  # same size, other pixels: a disk or a careless copy
    entry.write_bytes(bytes(data))
    rebuilt = build_image_cache(image_paths, "medclip", 16, tmp_path, progress=False)
    assert torch.equal(rebuilt, first)
    err = capsys.readouterr().err
    assert err.count("rebuilding it") == 1 and "checksum mismatch" in err and entry.name in err

    record = json.loads(record_file(entry).read_text())
    record["material"]["size"] = 32  # the record of some other entry
    record_file(entry).write_text(json.dumps(record))
    cache_module._VERIFIED.clear()
    assert torch.equal(build_image_cache(image_paths, "medclip", 16, tmp_path, progress=False), first)
    err = capsys.readouterr().err
    assert err.count("rebuilding it") == 1 and "recorded under another key" in err
    assert json.loads(record_file(entry).read_text())["material"]["size"] == 16
