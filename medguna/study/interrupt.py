"""Ctrl-C (or SIGTERM) stops the whole study, whenever it arrives.

Ray Tune installs its own SIGINT handler inside `Tuner.fit()` and leaves it installed after fit
returns. A Ctrl-C that lands after an experiment's last trial finished (fit still returning) or
between two experiments is then absorbed by Tune: it prints "Stop signal received" and the study
goes on with the next dataset. So the study owns SIGINT for its whole run: the first Ctrl-C
records the stop and, during a fit, asks Tune to stop through SIGUSR1 (which Tune always
handles the same way); the study checks the record after each experiment. A second Ctrl-C
raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TUNE_SIGINT_SWITCH = "TUNE_DISABLE_SIGINT_HANDLER"


class StopRequest:
    """Whether the user (Ctrl-C / SIGINT) or the system (SIGTERM: kill, a scheduler's timeout, a
    container stopping) asked the study to stop."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_number: int | None = None  # the first stop's signal: the exit code says which
        self._fitting = False

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_number = signum
        how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"[medguna] stop requested ({how}): the study stops after saving its state "
              "(Ctrl-C again to stop at once); run the same command to resume", file=sys.stderr)
        if self._fitting:
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own graceful stop

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process that signal ended (130, 143)."""
        return 128 + int(self.signal_number or signal.SIGINT)

    def own_sigterm(self) -> None:
        """Take SIGTERM back: `ray.init` installs a handler that exits the driver mid-fit (Ray's
        processes then abort with a stack dump), so after Ray starts SIGTERM is set to stop the
        study as Ctrl-C does."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigint)

    @contextmanager
    def fitting(self) -> Iterator[None]:
        """Mark a running `Tuner.fit()`, during which a stop is forwarded to Tune."""
        self._fitting = True
        try:
            yield
        finally:
            self._fitting = False


@contextmanager
def stop_on_interrupt() -> Iterator[StopRequest]:
    """Own SIGINT and SIGTERM (and keep Tune's SIGINT handler out) for the duration of the block."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return
    previous_int = signal.getsignal(signal.SIGINT)
    previous_usr1 = signal.getsignal(signal.SIGUSR1)
    previous_term = signal.getsignal(signal.SIGTERM)
    previous_switch = os.environ.get(TUNE_SIGINT_SWITCH)
    os.environ[TUNE_SIGINT_SWITCH] = "1"
    signal.signal(signal.SIGINT, stop._on_sigint)
    signal.signal(signal.SIGTERM, stop._on_sigint)
    # Outside a fit SIGUSR1's default action would kill the driver; the stop is recorded anyway.
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGUSR1, previous_usr1)
        signal.signal(signal.SIGTERM, previous_term)
        if previous_switch is None:
            os.environ.pop(TUNE_SIGINT_SWITCH, None)
        else:
            os.environ[TUNE_SIGINT_SWITCH] = previous_switch
