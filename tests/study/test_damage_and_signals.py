"""Damaged cache files are rebuilt and said once on the driver's console; a SIGTERM stops a study as
Ctrl-C does; a failed trial's error reads as its message, not Ray's traceback."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest

from medguna.data.manifest import SYNTHETIC_MARKER, load_manifest
from medguna.data.rebuilds import RebuildNotes
from medguna.data.synthetic import stand_in_problem
from medguna.results import COMPLETE_MARKER
from medguna.study.error_text import error_message
from medguna.study.interrupt import stop_on_interrupt
from medguna.study.progress import StudyProgress
from medguna.trial.prepare import synthetic_root


def _stand_in(cache: Path) -> Path:
    return synthetic_root(cache, "shenzhen", 0.3, seed=0, shift="none")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_byte_flipped_split_file_is_rebuilt_the_same_and_noted(tmp_path, capsys):
    root = _stand_in(tmp_path / "cache")
    first = load_manifest("shenzhen", root, tmp_path / "splits")
    original = first.split_file.read_bytes()
    damaged = bytearray(original)
    damaged[40] ^= 0x80  # not UTF-8 any more
    first.split_file.write_bytes(bytes(damaged))
    notes = RebuildNotes(tmp_path, since=0)
    again = load_manifest("shenzhen", root, tmp_path / "splits")
    assert again.split_file.read_bytes() == original
    assert again.table.equals(first.table)
    assert "UnicodeDecodeError" in capsys.readouterr().err
    (said,) = notes.new()
    assert said.startswith(f"split file {first.split_file} is damaged (UnicodeDecodeError")
    assert said.endswith("rebuilding it from the images, split_seed=0 and the fractions (the same split)")
    assert notes.new() == []  # once


def test_a_garbage_marker_or_a_corrupt_image_in_a_stand_in_is_written_again(tmp_path):
    cache = tmp_path / "cache"
    root = _stand_in(cache)
    intact = _files(root)
    notes = RebuildNotes(cache, since=0)
    assert stand_in_problem(root, "shenzhen", seed=0, scale=0.3, shift="none") == ""
    image = sorted((root / "CXR_png").glob("*.png"))[3]
    image.write_bytes(image.read_bytes()[:100])  # truncated PNG
    assert stand_in_problem(root, "shenzhen", seed=0, scale=0.3, shift="none") == (
        f"holding a damaged CXR_png/{image.name} (checksum mismatch)")
    assert _stand_in(cache) == root and _files(root) == intact
    (root / SYNTHETIC_MARKER).write_text("{garbage")
    assert stand_in_problem(root, "shenzhen", seed=0, scale=0.3, shift="none") == (
        f"without a readable {SYNTHETIC_MARKER}")
    assert _stand_in(cache) == root and _files(root) == intact
    assert sorted(notes.new()) == [
        f"synthetic stand-in {root} is holding a damaged CXR_png/{image.name} (checksum mismatch): writing it again",
        f"synthetic stand-in {root} is without a readable {SYNTHETIC_MARKER}: writing it again"]
    assert not [p for p in (cache / "synthetic").iterdir() if p.name.startswith(".") and "damaged" in p.name]


def test_a_garbage_marker_in_a_root_a_user_passed_is_a_clear_error(tmp_path):
    import pytest

    from medguna.errors import DataError

    root = _stand_in(tmp_path / "cache")
    (root / SYNTHETIC_MARKER).write_text("{garbage")
    manifest = load_manifest("shenzhen", root, tmp_path / "splits")
    with pytest.raises(DataError, match=f"{root / SYNTHETIC_MARKER} is not readable JSON .*it is the marker medguna synth writes"):
        _ = manifest.synthetic_info


def test_the_driver_console_shows_each_rebuilt_entry_once(tmp_path):
    from medguna.data.cache import report_rebuild

    stream = io.StringIO()
    progress = StudyProgress("shenzhen", 2, [], metric="m", objective="o", epochs=1, stream=stream, tty=False,
                             cache_dir=str(tmp_path))
    entry = tmp_path / "images" / "images_medclip_224_abc.npy"
    entry.parent.mkdir()
    entry.write_bytes(b"x")
    report_rebuild(entry, "changed on disk since it was written (checksum mismatch)")  # in a worker
    progress.on_trial_error(0, [], _FakeTrial())
    progress.on_trial_error(0, [], _FakeTrial())
    line = (f"[shenzhen] image cache entry {entry} is changed on disk since it was written (checksum "
            "mismatch): rebuilding it")
    assert stream.getvalue().count(line) == 1


class _FakeTrial:
    trial_id, config, last_result, error_file, local_path = "a", {}, {}, None, "/x/t0001_a"


def test_sigterm_stops_the_study_as_ctrl_c_does_with_its_exit_code():
    # An earlier ray.init in this process may have left Ray's own handler: restore whatever was there.
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.exit_code == 143
    with stop_on_interrupt() as stop:
        stop.own_sigterm()  # after ray.init replaced the handler
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.exit_code == 130
    assert signal.getsignal(signal.SIGTERM) is before


RAY_ERROR = (
    "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=4242, ip=10.0.0.1, actor_id=ab12, repr=medguna_trainable)\n"
    '  File "/venv/lib/python3.12/site-packages/ray/tune/trainable/function_trainable.py", line 45, in _trainable_func\n'
    "    output = fn()\n"
    '  File "/work/medguna/trial/loop.py", line 88, in run_trial\n'
    "    raise DataError(message)\n"
    "medguna.errors.DataError: image /data/CXR_png/CHNCXR_0001_0.png is truncated: re-download it\n"
)


def test_the_first_error_is_its_message_without_traceback_or_colour():
    assert error_message(RAY_ERROR) == (
        "DataError: image /data/CXR_png/CHNCXR_0001_0.png is truncated: re-download it")
    assert error_message("ValueError: x\n\nDuring handling...\nKeyError: 'y'") == "KeyError: 'y'"
    assert error_message("\x1b[31msomething odd\x1b[0m") == "something odd"


class _FitThatGetsSigterm:
    """A tuner whose fit() gets SIGTERM after Ray installed its own handler (ray.init does, and it
    exits the driver mid-fit), then finishes as Tune does after a graceful stop."""

    fitted: list = []  # noqa: RUF012 (a test's record)

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def fit(self):
        type(self).fitted.append(self.dataset)
        os.kill(os.getpid(), signal.SIGTERM)
        return []


def test_sigterm_during_a_study_stops_it_resumably_with_exit_code_143(tmp_path, monkeypatch, stubbed_study):
    import ray

    from medguna.study import runner
    from medguna.study.errors import StudyInterrupted

    _FitThatGetsSigterm.fitted = []
    before = signal.getsignal(signal.SIGTERM)  # Ray's own where an earlier test in this process started Ray

    def ray_init(**kwargs):  # as ray.init does: a SIGTERM handler that exits the driver
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", ray_init)
    cfg = stubbed_study(_FitThatGetsSigterm)
    with pytest.raises(StudyInterrupted) as stopped:
        runner.run_study(cfg, log=lambda line: None)
    assert stopped.value.exit_code == 143
    assert _FitThatGetsSigterm.fitted == ["montgomery"]  # shenzhen waits for the next run
    assert (tmp_path / "runs" / cfg.study.name / "montgomery" / COMPLETE_MARKER).is_file()
    assert signal.getsignal(signal.SIGTERM) is before
