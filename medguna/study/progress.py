"""What a study prints while it runs: a compact progress display per dataset, not Ray's tables.

`StudyProgress` is a Ray Tune callback. Per dataset it shows a bar of finished / running / failed /
stopped-early trials, the best objective so far with its hyperparameters, that trial's zero-shot
figure, the elapsed and estimated remaining time, and one line per finished trial. On a terminal
the status line is redrawn in place; elsewhere (CI logs, a file) it prints plain lines only.
Ray's own tables come back with `studies/run.py --verbose`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ray.tune import Callback

from medguna.data.rebuilds import RebuildNotes
from medguna.results import TrialOutcome, outcome_of

# A finished trial's state is its TrialOutcome; these two are not finished.
RUNNING, PENDING = "running", "pending"
BAR_WIDTH = 12
LINE_WIDTH = 80  # lines are wrapped to the terminal's width, this wide where there is no terminal
PLAIN_STATUS_EVERY_S = 60.0  # without a terminal, a status line at most this often between trials
TTY_REDRAW_EVERY_S = 1.0
NOTES_EVERY_S = 5.0  # how often the trials' notes of rebuilt cache entries are looked for between events
STARTED, FINISHED, TICK = "started", "finished", "tick"  # what made the display update


@dataclass
class Counts:
    completed: int = 0
    stopped_early: int = 0
    failed: int = 0
    incomplete: int = 0
    running: int = 0
    pending: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.stopped_early + self.failed + self.incomplete


def progress_bar(counts: Counts, total: int, width: int = BAR_WIDTH) -> str:
    """`[###=!~~..........]`: # completed, = stopped early (or ended incomplete), ! failed,
    ~ running, . to come."""
    total = max(total, counts.finished + counts.running, 1)
    cells = []
    for n, mark in ((counts.completed, "#"), (counts.stopped_early + counts.incomplete, "="), (counts.failed, "!"),
                    (counts.running, "~")):
        cells.append(mark * round(width * n / total))
    bar = "".join(cells)[:width]
    return "[" + bar + "." * (width - len(bar)) + "]"


def clock(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def remaining_seconds(elapsed: float, finished: int, total: int) -> float | None:
    """Time left at the pace so far (finished trials per elapsed second); None before the first."""
    if finished <= 0 or total <= finished:
        return None if finished <= 0 else 0.0
    return elapsed / finished * (total - finished)


def trial_outcome(trial, epochs: int | None = None) -> str:
    """A TrialOutcome once the Tune Trial object has finished, else running | pending.
    `epochs`: stage-2 epochs of a full-budget trial."""
    status = getattr(trial, "status", "PENDING")
    if status in ("ERROR", "TERMINATED"):
        return outcome_of(trial.last_result, failed=status == "ERROR", epochs=epochs)
    return RUNNING if status == "RUNNING" else PENDING


def format_params(config: dict[str, Any], names: list[str]) -> str:
    def fmt(value):
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{n}={fmt(config[n])}" for n in names if n in config)


def line_width() -> int:
    """The width lines are wrapped to: the terminal's (less one column, so a full line never makes
    the terminal wrap it), or LINE_WIDTH - 1 in a log ($COLUMNS where set)."""
    return max(shutil.get_terminal_size((LINE_WIDTH, 24)).columns - 1, 40)


def fit(text: str, width: int, indent: int, cut_long_words: bool = True) -> list[str]:
    """`text` as lines of at most `width` characters; continuation lines indented by `indent`
    spaces. Words longer than a line are cut, so no line is ever wider, unless cut_long_words is
    False (a path or command stays whole, so it can still be copied)."""
    return textwrap.wrap(text, width, subsequent_indent=" " * indent, break_on_hyphens=False,
                         break_long_words=cut_long_words) or [""]


def fit_block(text: str, width: int | None = None) -> str:
    """Every line of `text` fitted to `width` (line_width() by default), continuation lines
    indented 4 columns past the line's own indent, so a wrapped row stays under its heading. A word
    wider than a line (a path, a command) stays whole, so it can still be copied."""
    width = width or line_width()
    out = []
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        out += fit(line, width, indent + 4, cut_long_words=False) if line.strip() else [line]
    return "\n".join(out)


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


class StudyProgress(Callback):
    """The progress display of one dataset's experiment (a Ray Tune callback).

    dataset, total: what runs; searched: the searched hyperparameter names, shown with each trial;
    metric: the Tune metric (best-so-far objective, maximised); objective: its name for the reader;
    epochs: stage-2 epochs of a full-budget trial.
    """

    def __init__(self, dataset: str, total: int, searched: list[str], *, metric: str, objective: str,
                 epochs: int, stream: TextIO | None = None, tty: bool | None = None,
                 cache_dir: str | None = None) -> None:
        self.dataset, self.total, self.searched = dataset, total, list(searched)
        self.metric, self.objective, self.epochs = metric, objective, epochs
        self.cache_dir = cache_dir  # where trials leave notes of rebuilt cache entries (medguna.data.rebuilds)
        self._attach(stream, tty)

    def _attach(self, stream: TextIO | None, tty: bool | None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._outcomes: dict[str, str] = {}  # trial id -> outcome told by Tune's hooks
        self._drawn = 0  # how many status lines are on screen, to be erased at the next redraw
        self._last_plain = 0.0
        self._last_draw = 0.0
        self._last_counts: Counts | None = None  # as last printed in plain lines
        self._notes = RebuildNotes(self.cache_dir) if getattr(self, "cache_dir", None) else None
        self._last_notes = 0.0

    # Tune pickles the run config (with its callbacks) into tuner.pkl for resume: no stream in it.
    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in
                ("dataset", "total", "searched", "metric", "objective", "epochs", "cache_dir")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attach(None, None)

    # ---- Tune's hooks ----

    def setup(self, **info) -> None:
        self.started = time.monotonic()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._status(trials, event=STARTED)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._status(trials, event=TICK)

    def on_step_end(self, iteration, trials, **info) -> None:
        self._status(trials, event=TICK)  # keeps the clock moving between events

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        outcome = outcome_of(trial.last_result, failed=False, epochs=self.epochs)
        self._outcomes[trial.trial_id] = outcome
        self._finished_line(trial, outcome)
        self._status(trials, event=FINISHED)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._outcomes[trial.trial_id] = TrialOutcome.FAILED
        self._finished_line(trial, TrialOutcome.FAILED)
        self._status(trials, event=FINISHED)

    def on_experiment_end(self, trials, **info) -> None:
        self._status(trials, event=FINISHED)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    # ---- what is shown ----

    def counts(self, trials) -> Counts:
        counts = Counts()
        for trial in trials:
            outcome = str(self._outcomes.get(trial.trial_id) or trial_outcome(trial, self.epochs))
            setattr(counts, outcome, getattr(counts, outcome) + 1)
        return counts

    def best(self, trials):
        """The completed trial with the highest objective so far, or None."""
        done = [t for t in trials
                if (self._outcomes.get(t.trial_id) or trial_outcome(t, self.epochs)) == TrialOutcome.COMPLETED
                and isinstance((t.last_result or {}).get(self.metric), (int, float))
                and math.isfinite(t.last_result[self.metric])]
        return max(done, key=lambda t: t.last_result[self.metric], default=None)

    def status_lines(self, trials, width: int | None = None) -> list[str]:
        """The status as lines of at most `width` characters (default: line_width()): the bar and
        times, the counts, and the best trial so far with its hyperparameters."""
        width = width or line_width()
        counts = self.counts(trials)
        elapsed = time.monotonic() - self.started
        left = remaining_seconds(elapsed, counts.finished, self.total)
        when = ("done" if counts.finished >= self.total else
                "~" + clock(left) + " left" if left is not None else "time left after a trial")
        tag = f"[{self.dataset}]"
        indent = len(tag) + 3
        lines = fit(f"{tag} {progress_bar(counts, self.total)} {counts.finished}/{self.total} finished | "
                    f"{clock(elapsed)} elapsed, {when}", width, indent)
        lines += fit(f"{tag}   {counts.completed} completed, {counts.stopped_early} stopped early, "
                     f"{counts.failed} failed, {counts.running} running"
                     + (f", {counts.incomplete} incomplete" if counts.incomplete else ""), width, indent)
        best = self.best(trials)
        if best is None:
            return lines + fit(f"{tag}   best {self.objective}: no completed trial yet", width, indent)
        row = best.last_result
        zero_shot = row.get(f"zeroshot_{self.objective}") if self.objective.startswith("val_") else None
        return lines + fit(f"{tag}   best {self.objective} {_number(row[self.metric])} "
                           f"({_trial_name(best)}; zero-shot {_number(zero_shot)}): "
                           f"{format_params(best.config, self.searched)}", width, indent)

    def finished_line(self, trial, outcome: str, width: int | None = None) -> list[str]:
        """A finished trial as lines of at most `width` characters: its outcome, then its
        hyperparameters."""
        row = trial.last_result or {}
        epoch = row.get("epoch", "?")
        tag = f"[{self.dataset}]"
        text = f"{tag} {_trial_name(trial)} {str(outcome).replace('_', ' '):<13}"
        if outcome == TrialOutcome.FAILED:
            text += f" {error_reason(trial)}"
        else:
            text += (f" {self.objective} {_number(row.get(self.metric))} after epoch {epoch}/"
                     f"{self.epochs}, test {_number(row.get('test_balanced_accuracy'))}")
        return fit(f"{text} | {format_params(trial.config, self.searched)}", width or line_width(),
                   len(tag) + 3)

    def _finished_line(self, trial, outcome: str) -> None:
        self._clear()
        self.stream.write("\n".join(self.finished_line(trial, outcome)) + "\n")
        self.stream.flush()

    def _status(self, trials, *, event: str) -> None:
        """Terminal: redraw on a trial's start or end, else at most every TTY_REDRAW_EVERY_S.
        Plain lines: after a trial ends if the counts changed, else every PLAIN_STATUS_EVERY_S."""
        now = time.monotonic()
        self._rebuild_lines(now, force=event != TICK)
        if not self.tty:
            # The time alone changes every second: print after a trial ends only if the counts did.
            news = self.counts(trials) != self._last_counts
            if (event == FINISHED and news) or now - self._last_plain >= PLAIN_STATUS_EVERY_S:
                self.stream.write("\n".join(self.status_lines(trials)) + "\n")
                self.stream.flush()
                self._last_plain, self._last_counts = now, self.counts(trials)
            return
        if event == TICK and now - self._last_draw < TTY_REDRAW_EVERY_S:
            return
        # Wrapped to the terminal's width by status_lines, so the redraw knows how many lines to erase
        # (a line the terminal wrapped itself would defeat the cursor-up redraw).
        lines = self.status_lines(trials)
        self._clear()
        self.stream.write("\n".join(lines))
        self.stream.flush()
        self._drawn, self._last_draw = len(lines), now

    def _rebuild_lines(self, now: float, *, force: bool) -> None:
        """One line per cache entry a trial rebuilt (told in the worker's log only, otherwise)."""
        if self._notes is None or (not force and now - self._last_notes < NOTES_EVERY_S):
            return
        self._last_notes = now
        for message in self._notes.new():
            self._clear()
            self.stream.write(f"[{self.dataset}] {message}\n")
            self.stream.flush()

    def _clear(self) -> None:
        """Erase the status lines drawn last (terminal only): clear a line, cursor up, for each."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K" + "\x1b[1A\r\x1b[2K" * (self._drawn - 1))
            self._drawn = 0


def _trial_name(trial) -> str:
    """The trial's folder name (t0003_<id>), which is also its TensorBoard run."""
    path = getattr(trial, "local_path", None) or getattr(trial, "path", None)
    return os.path.basename(str(path).rstrip("/")) if path else trial.trial_id


def error_reason(trial) -> str:
    """The last line of the trial's error.txt (the exception and its message), shortened."""
    try:
        with open(trial.error_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, TypeError):
        lines = []
    return lines[-1][:200] if lines else "(no error.txt yet)"


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


# Ray's notice when it starts a local cluster with token authentication on (its default, and the
# safe setting: nothing for the user to do). The warning for a cluster *without* it stays.
TOKEN_AUTH_NOTICE = ("ray._private.authentication.authentication_token_setup",
                     "Token authentication is enabled for this Ray cluster")


# Ray's traceback of each failed trial (remote frames, ANSI colours): the display's line for the
# trial gives its reason, and the trial's error.txt keeps the traceback; --verbose shows it again.
TRIAL_FAILED_TRACEBACK = ("ray.tune.execution.tune_controller", "Trial task failed for trial")


def quiet_libraries() -> None:
    """Silence what does not concern a study's user: Optuna's INFO line per study ("A new study
    created in memory ..."), Ray's token-authentication notice and its traceback per failed trial.
    Idempotent."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, start in (TOKEN_AUTH_NOTICE, TRIAL_FAILED_TRACEBACK):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(start))


@contextlib.contextmanager
def ray_console(verbose: bool):
    """Around Tuner.fit: without verbose, Ray's legacy console output, which at verbosity 0 prints
    nothing (the default one still prints an experiment box and a TensorBoard command for its own
    temporary folder); medguna's StudyProgress callback prints instead."""
    if verbose:
        yield
        return
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before
