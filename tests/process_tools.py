"""Finding and ending exactly the processes a test started, by a variable in their environment.

A test gives what it starts a NAME=value that only its own processes carry (RAY_TMPDIR=<its own
folder>, MEDGUNA_SLURM_TEST=<its tmp_path>); every child inherits it whatever it renames itself to
(Ray renames its workers and agents, so command lines do not tell), so ending them never touches
another Ray or job on the machine. Test modules import it as `process_tools` (tests/ is on sys.path:
pytest puts the folder of tests/conftest.py there).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def processes_with(variable: str, value: str | os.PathLike) -> list[int]:
    """The ids of the processes (this one aside) whose environment holds variable=value."""
    marker, pids = f"{variable}={value}\0".encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # it ended meanwhile, or is not ours to read
            continue
    return pids


def end_processes_with(variable: str, value: str | os.PathLike, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, exactly the processes whose environment holds variable=value."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_with(variable, value):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while processes_with(variable, value) and time.monotonic() < deadline:
            time.sleep(0.2)
