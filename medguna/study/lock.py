"""One driver per study: a lock file in the study folder, held while the study runs.

Two drivers on one study would both "resume" the same Tune experiment, rerun each other's
in-flight trials into the same folders and corrupt the counts. The lock is an exclusive
`flock` on <study>/study.lock, so the kernel releases it when its driver dies, however it dies:
a lock left by a killed driver is free and the next driver takes it over. The file also records
who holds it (host, PID, start time), so a refused driver can name the one that runs.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medguna.errors import MedgunaError

LOCK_FILE = "study.lock"


class StudyLocked(MedgunaError):
    """Another driver is running this study."""


def _holder_text(info: dict) -> str:
    return (f"host {info.get('host', '?')}, PID {info.get('pid', '?')}, "
            f"started {info.get('started', '?')}")


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 64 * 1024)
    try:
        info = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


@contextmanager
def study_lock(study_dir: str | os.PathLike, *, log: Callable[[str], None] = print) -> Iterator[dict]:
    """Hold the study's lock for the duration of the block; yields this driver's lock record.

    Raises StudyLocked at once (no waiting) when another live driver holds it.
    """
    folder = Path(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise StudyLocked(
                f"the study in {folder} is already running ({_holder_text(holder)}): wait for it to "
                "finish or stop it (Ctrl-C), then run this command again to resume; or give this run "
                "another study.name"
            ) from None
        previous = _read_holder(fd)
        if previous:
            # The kernel freed the lock, so that driver is gone (killed, crashed, machine rebooted).
            log(f"taking over the lock of a study driver that is no longer running ({_holder_text(previous)})")
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        try:
            yield record
        finally:
            # Empty record = released cleanly; only a driver that died leaves its record behind.
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
