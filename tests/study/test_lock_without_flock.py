"""The study lock where flock does not work (Lustre without the flock mount option: ENOSYS).

flock is made to fail as such a filesystem fails it; the study then holds an exclusive-create lock
file with a heartbeat, which excludes a second driver, names the holder when it refuses, and is
taken over once its holder is gone (process dead on this host, or heartbeat too old).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medguna.compose import compose_study
from medguna.config import ConfigError
from medguna.study import lock as lock_module
from medguna.study.lock import LOCK_FILE, StudyLocked, read_lock, study_lock


@pytest.fixture
def no_flock(monkeypatch):
    def enosys(fd, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(fcntl, "flock", enosys)


def test_without_flock_the_file_lock_is_used_says_so_and_excludes_a_second_driver(tmp_path, no_flock):
    study_dir = tmp_path / "runs" / "mine"
    lines: list[str] = []
    with study_lock(study_dir, log=lines.append) as record:
        assert lines == [(f"study lock: {study_dir / LOCK_FILE} is an exclusive-create lock file with a "
                          "heartbeat every 10 s (this filesystem has no flock)")]
        on_disk = read_lock(study_dir)
        assert on_disk == record
        assert (on_disk["host"], on_disk["pid"], on_disk["lock"]) == (socket.gethostname(), os.getpid(), "file")
        assert abs(on_disk["heartbeat"] - time.time()) < 60
        # This very process is alive and its heartbeat fresh: a second driver is refused, by name.
        with pytest.raises(StudyLocked) as refused, study_lock(study_dir, log=lines.append):
            pass
        message = str(refused.value)
        assert f"host {socket.gethostname()}" in message and f"PID {os.getpid()}" in message
        assert "already running" in message
        assert read_lock(study_dir) == record  # the refused driver left the holder's record alone
    assert not (study_dir / LOCK_FILE).exists()  # released: the next driver creates it afresh
    with study_lock(study_dir, log=lines.append) as record:
        assert read_lock(study_dir)["pid"] == os.getpid()


def test_the_heartbeat_refreshes_the_record(tmp_path, no_flock):
    study_dir = tmp_path / "s"
    with study_lock(study_dir, log=lambda line: None, heartbeat=0.05) as record:
        first = read_lock(study_dir)["heartbeat"]
        deadline = time.monotonic() + 30
        while read_lock(study_dir)["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_lock(study_dir)["heartbeat"] > first
        assert read_lock(study_dir)["started"] == record["started"]


def _write(study_dir: Path, record: dict) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / LOCK_FILE).write_text(json.dumps(record))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lock_whose_driver_died_on_this_host_is_taken_over(tmp_path, no_flock):
    study_dir = tmp_path / "s"
    dead = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "2026-01-01T00:00:00+00:00",
            "lock": "file", "heartbeat": time.time()}  # fresh heartbeat, but the process is gone
    _write(study_dir, dead)
    lines: list[str] = []
    with study_lock(study_dir, log=lines.append):
        assert read_lock(study_dir)["pid"] == os.getpid()
    assert any(f"PID {dead['pid']}" in line and "its process is gone" in line for line in lines)


def test_a_lock_with_an_old_heartbeat_is_taken_over_a_fresh_one_is_not(tmp_path, no_flock):
    study_dir = tmp_path / "s"
    # Another host: its PID cannot be checked from here, only its heartbeat.
    other = {"host": "node-elsewhere-17", "pid": 4242, "started": "2026-01-01T00:00:00+00:00", "lock": "file"}
    _write(study_dir, {**other, "heartbeat": time.time() - 5})
    with pytest.raises(StudyLocked, match="host node-elsewhere-17, PID 4242"), study_lock(study_dir, log=lambda line: None, stale_after=120):
        pass
    assert read_lock(study_dir)["pid"] == 4242
    _write(study_dir, {**other, "heartbeat": time.time() - 500})
    lines: list[str] = []
    with study_lock(study_dir, log=lines.append, stale_after=120) as record:
        assert read_lock(study_dir) == record and record["host"] == socket.gethostname()
    assert any("PID 4242" in line and "last heartbeat was" in line for line in lines)


_HOLDER = textwrap.dedent("""
    import errno, fcntl, os, sys, time
    def enosys(fd, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    fcntl.flock = enosys
    from medguna.study.lock import study_lock
    with study_lock(sys.argv[1], log=lambda line: None):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_driver_killed_while_holding_the_file_lock_is_refused_then_taken_over(tmp_path, no_flock):
    study_dir = tmp_path / "s"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(study_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyLocked, match=f"PID {holder.pid}"), study_lock(study_dir, log=lambda line: None):
            pass
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind, with its record
        holder.wait()
    assert read_lock(study_dir)["pid"] == holder.pid
    with study_lock(study_dir, log=lambda line: None):
        assert read_lock(study_dir)["pid"] == os.getpid()


def test_flock_drivers_see_a_live_file_lock_holder(tmp_path):
    # A driver on a host whose mount has flock must not run beside one that holds the file lock.
    study_dir = tmp_path / "s"
    _write(study_dir, {"host": "login-2", "pid": 99, "started": "x", "lock": "file", "heartbeat": time.time()})
    with pytest.raises(StudyLocked, match="host login-2, PID 99"), study_lock(study_dir, log=lambda line: None):
        pass


def test_storage_lock_flock_refuses_a_filesystem_without_it(tmp_path, no_flock):
    with pytest.raises(StudyLocked, match="does not support flock: set storage.lock=file"), study_lock(tmp_path / "s", log=lambda line: None, kind="flock"):
        pass
    assert not (tmp_path / "s" / LOCK_FILE).exists()


def test_storage_lock_file_is_used_even_where_flock_works(tmp_path):
    lines: list[str] = []
    with study_lock(tmp_path / "s", log=lines.append, kind="file") as record:
        assert record["lock"] == "file" and "exclusive-create lock file" in lines[0]
        assert "no flock" not in lines[0]


def test_storage_lock_is_a_checked_setting(tmp_path):
    assert compose_study([]).storage.lock == "auto"
    assert compose_study(["storage.lock=file"]).storage.lock == "file"
    with pytest.raises(ConfigError, match=r"storage.lock='nfs' is invalid: expected one of \('auto', 'flock', 'file'\)"):
        compose_study(["storage.lock=nfs"])


def test_flock_failing_otherwise_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    def eio(fd, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(lock_module.fcntl, "flock", eio)
    with pytest.raises(StudyLocked, match="Input/output error.*storage.lock=file"), study_lock(tmp_path / "s", log=lambda line: None):
        pass
