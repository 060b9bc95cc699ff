"""One driver per study: a lock file in the study folder, held while the study runs.

Two drivers on one study would both "resume" the same Tune experiment, rerun each other's
in-flight trials into the same folders and corrupt the counts. Two kinds of lock guard
<study>/study.lock, both recording who holds it (host, PID, start time, a heartbeat) so a refused
driver can name the one that runs:

- flock (the default): an exclusive `flock` on the file. The kernel releases it when its driver
  dies, however it dies, so a lock left by a killed driver is free for the next one.
- file: for shared filesystems where `flock` fails (Lustre mounted without `flock` answers ENOSYS).
  The file is created exclusively (O_CREAT|O_EXCL) and removed on release; a thread refreshes its
  heartbeat while the study runs. A lock whose heartbeat is older than `stale_after` seconds, or
  whose driver ran on this host and is gone, is taken over.

`kind="auto"` (storage.lock) uses flock and switches to the file lock, saying so, where the
filesystem does not support flock. Both kinds heartbeat, so a file-lock driver also recognises a
live flock holder on the same study.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from medguna.config import STUDY_LOCK_KINDS
from medguna.errors import MedgunaError

LOCK_FILE = "study.lock"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0  # a dozen missed heartbeats: a live driver is never judged stale by a slow disk
# flock's errors on filesystems without it (ENOSYS: Lustre without -o flock; EOPNOTSUPP/ENOTSUP:
# some FUSE and network filesystems; ENOLCK: NFS without a lock manager).
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK}


class StudyLocked(MedgunaError):
    """Another driver is running this study."""


def _holder_text(info: dict) -> str:
    return (f"host {info.get('host', '?')}, PID {info.get('pid', '?')}, "
            f"started {info.get('started', '?')}")


def _refusal(folder: Path, holder: dict) -> StudyLocked:
    return StudyLocked(
        f"the study in {folder} is already running ({_holder_text(holder)}): wait for it to "
        "finish or stop it (Ctrl-C), then run this command again to resume; or give this run "
        "another study.name"
    )


def _parse(raw: bytes) -> dict:
    try:
        info = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _read_holder(fd: int) -> dict:
    return _parse(os.pread(fd, 64 * 1024, 0))


def read_lock(study_dir: str | os.PathLike) -> dict:
    """The record in a study's lock file ({} when it is absent or released)."""
    try:
        return _parse((Path(study_dir) / LOCK_FILE).read_bytes())
    except FileNotFoundError:
        return {}


def _new_record(kind: str) -> dict:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "lock": kind, "heartbeat": now}


def _write_record(fd: int, record: dict) -> None:
    # Written over the old record, then cut to length: a reader never sees an empty file.
    data = json.dumps(record).encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


def _pid_gone(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _stale_reason(holder: dict, stale_after: float) -> str | None:
    """Why a holder's record is no longer a running driver's, or None while it may be one."""
    if holder.get("host") == socket.gethostname() and _pid_gone(holder.get("pid")):
        return "its process is gone"
    beat = holder.get("heartbeat")
    if not isinstance(beat, int | float):
        return "it has no heartbeat"
    age = time.time() - beat
    if age > stale_after:
        return f"its last heartbeat was {age:.0f} s ago (stale after {stale_after:g} s)"
    return None


class _Heartbeat:
    """Refreshes the record's heartbeat every `interval` seconds through the holder's own fd."""

    def __init__(self, fd: int, record: dict, interval: float):
        self.fd, self.record, self.interval = fd, record, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="medguna-study-lock-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.record["heartbeat"] = time.time()
            try:
                _write_record(self.fd, self.record)
            except OSError:  # a full or vanished disk: the study itself will report it
                pass

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


def _flock_supported(fd: int) -> bool:
    """Takes the flock (True), or finds that this filesystem has none (False).

    Raises BlockingIOError when another driver holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if isinstance(err, BlockingIOError):
            raise
        if err.errno in _NO_FLOCK:
            return False
        raise
    return True


@contextmanager
def _flock_lock(folder: Path, fd: int, log, heartbeat: float, stale_after: float) -> Iterator[dict]:
    previous = _read_holder(fd)
    if previous.get("lock") == "file" and _stale_reason(previous, stale_after) is None:
        # A driver on a host without flock holds the study through the file lock.
        fcntl.flock(fd, fcntl.LOCK_UN)
        raise _refusal(folder, previous)
    if previous:
        # The kernel freed the lock, so that driver is gone (killed, crashed, machine rebooted).
        log(f"taking over the lock of a study driver that is no longer running ({_holder_text(previous)})")
    record = _new_record("flock")
    _write_record(fd, record)
    try:
        with _Heartbeat(fd, record, heartbeat):
            yield record
    finally:
        # Empty record = released cleanly; only a driver that died leaves its record behind.
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)


def _take_file_lock(folder: Path, path: Path, log, stale_after: float) -> tuple[int, dict]:
    guard = path.with_name(LOCK_FILE + ".takeover")
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_lock(folder)
            if not holder:
                try:
                    created = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if time.time() - created < 5:  # just created, its record not yet written
                    time.sleep(0.2)
                    continue
                reason = "it is empty (released by a flock driver)"
            else:
                reason = _stale_reason(holder, stale_after)
                if reason is None:
                    raise _refusal(folder, holder) from None
            # Only the driver that creates the guard removes a stale lock, so two drivers taking
            # over at once cannot both remove a lock (the second one would remove the first one's).
            try:
                gfd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    if time.time() - guard.stat().st_mtime > stale_after:
                        guard.unlink(missing_ok=True)  # left by a driver that died taking over
                except FileNotFoundError:
                    pass
                time.sleep(0.2)
                continue
            try:
                if read_lock(folder) == holder:
                    if holder:
                        log(f"taking over the lock of a study driver that is no longer running "
                            f"({_holder_text(holder)}): {reason}")
                    path.unlink(missing_ok=True)
            finally:
                os.close(gfd)
                guard.unlink(missing_ok=True)
            continue
        record = _new_record("file")
        _write_record(fd, record)
        return fd, record
    raise StudyLocked(f"could not take the lock {path}: other drivers kept changing it; run this command "
                      "again, and check that no other driver runs this study")


@contextmanager
def _file_lock(folder: Path, log, heartbeat: float, stale_after: float) -> Iterator[dict]:
    path = folder / LOCK_FILE
    fd, record = _take_file_lock(folder, path, log, stale_after)
    try:
        with _Heartbeat(fd, record, heartbeat):
            yield record
    finally:
        try:
            # Removed only while it is still this driver's file (not one that took it over).
            if os.fstat(fd).st_ino == path.stat().st_ino and _read_holder(fd).get("pid") == record["pid"]:
                path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def study_lock(study_dir: str | os.PathLike, *, log: Callable[[str], None] = print, kind: str = "auto",
               heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S) -> Iterator[dict]:
    """Hold the study's lock for the duration of the block; yields this driver's lock record.

    kind: "auto" (flock, or the file lock where the filesystem has no flock), "flock" or "file".
    Raises StudyLocked at once (no waiting) when another live driver holds it.
    """
    if kind not in STUDY_LOCK_KINDS:
        raise ValueError(f"lock kind {kind!r}: expected one of {STUDY_LOCK_KINDS}")
    folder = Path(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if kind != "file":
        path = folder / LOCK_FILE
        try:
            fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(path, os.O_RDWR | os.O_CREAT, 0o644), False
        try:
            try:
                has_flock = _flock_supported(fd)
            except BlockingIOError:
                raise _refusal(folder, _read_holder(fd)) from None
            except OSError as err:
                raise StudyLocked(f"could not lock {folder / LOCK_FILE} with flock ({err.strerror}); "
                                  "set storage.lock=file to use a lock file with a heartbeat instead") from None
            if has_flock:
                with _flock_lock(folder, fd, log, heartbeat, stale_after) as record:
                    yield record
                return
            if created and os.fstat(fd).st_size == 0:
                path.unlink(missing_ok=True)  # the file lock creates its own, exclusively
            if kind == "flock":
                raise StudyLocked(f"the filesystem of {folder} does not support flock: set storage.lock=file "
                                  "(or auto) to use a lock file with a heartbeat instead")
        finally:
            os.close(fd)
    log(f"study lock: {folder / LOCK_FILE} is an exclusive-create lock file with a heartbeat "
        f"every {heartbeat:g} s" + (" (this filesystem has no flock)" if kind == "auto" else ""))
    with _file_lock(folder, log, heartbeat, stale_after) as record:
        yield record
