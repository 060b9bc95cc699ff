"""A trial whose input is wrong fails once, not `resources.max_failures + 1` times.

Tune retries every failed trial. That helps after a lost node or an out-of-memory, but a corrupt
image, a bad description file or a checkpoint that does not load fail the same way every time,
after redoing the trial's whole setup. The first attempt leaves a marker in the trial's folder
(which Tune keeps for the retry, and syncs into the study with the trial's other files); a retry
that finds it fails at once with the same reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medguna.atomic import write_text_atomic
from medguna.errors import CheckpointError, ConfigError, DataError, DescriptionError, MedgunaError

INPUT_ERRORS = (DataError, ConfigError, CheckpointError, DescriptionError)
"""Errors of the trial's input, which a retry meets again (a NaN loss, TrialError, is not one)."""

MARKER = "medguna_input_error.txt"


class InputErrorNotRetried(MedgunaError):
    """A retry of a trial whose first attempt failed on its input."""


@contextmanager
def input_errors_not_retried(trial_dir: str | Path) -> Iterator[None]:
    marker = Path(trial_dir) / MARKER
    if marker.is_file():
        raise InputErrorNotRetried(
            f"{marker.read_text().strip()} (not retried: the first attempt failed on this input; "
            "fix it, then run the study again to resume)")
    try:
        yield
    except INPUT_ERRORS as error:
        write_text_atomic(marker, f"{type(error).__name__}: {error}\n")
        raise
