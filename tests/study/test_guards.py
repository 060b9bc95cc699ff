"""What a study refuses before it can do harm: names that escape storage.path, unwritable folders,
a second driver on a running study; and a Ctrl-C that must stop the whole study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest

from medguna.compose import compose_study
from medguna.errors import ConfigError
from medguna.results import COMPLETE_MARKER
from medguna.study import runner
from medguna.study.fresh import clear_study_folder, study_folder
from medguna.study.lock import LOCK_FILE, StudyLocked, study_lock

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["", " ", ".", "..", "/", "/tmp/x", "a/b", "a\\b", "../other", "x..y"])
def test_a_study_name_that_could_escape_the_storage_path_is_refused(name):
    with pytest.raises(ConfigError, match=r"study\.name=.* is invalid"):
        compose_study([f"study.name='{name}'"])


def test_the_reproduction_of_the_deleted_parent_now_deletes_nothing(tmp_path, no_ray):
    sys.path.insert(0, str(REPO / "studies"))
    try:
        from run import main
    finally:
        sys.path.pop(0)
    keep = tmp_path / "keep"
    (keep / "runs" / "o").mkdir(parents=True)
    (keep / "important.txt").write_text("x")
    rc = main(["--study", "fundus", "study.name=..", f"storage.path={keep / 'runs'}", "--fresh", "--no-report"])
    assert rc == 2
    assert (keep / "important.txt").read_text() == "x" and (keep / "runs" / "o").is_dir()


def test_fresh_clears_only_the_study_folder_and_keeps_its_lock(tmp_path):
    storage = tmp_path / "runs"
    (storage / "mine" / "montgomery" / "t0001_a").mkdir(parents=True)
    (storage / "mine" / "study.json").write_text("{}")
    (storage / "mine" / LOCK_FILE).write_text("")
    (storage / "other").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("precious")
    (storage / "mine" / "link").symlink_to(outside)
    removed = clear_study_folder(str(storage), "mine", keep=(LOCK_FILE,))
    assert removed == ["link", "montgomery", "study.json"]
    assert sorted(p.name for p in (storage / "mine").iterdir()) == [LOCK_FILE]
    assert (storage / "other").is_dir() and (outside / "data.txt").read_text() == "precious"


def test_fresh_refuses_a_study_folder_that_is_a_symlink(tmp_path):
    storage = tmp_path / "runs"
    storage.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (storage / "mine").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="is a symlink"):
        study_folder(str(storage), "mine")
    with pytest.raises(ConfigError, match="study.name"):
        study_folder(str(storage), "..")


def test_a_file_as_storage_path_or_cache_dir_stops_the_study_before_ray(tmp_path, no_ray):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    cfg = compose_study([f"storage.path={afile}", f"storage.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match=r"storage\.path=.*afile is a file, not a folder"):
        runner.run_study(cfg, log=lambda line: None)
    cfg = compose_study([f"storage.path={tmp_path / 'runs'}", f"storage.cache_dir={afile}"])
    with pytest.raises(ConfigError, match=r"storage\.cache_dir=.*afile is a file"):
        runner.run_study(cfg, log=lambda line: None)
    cfg = compose_study([f"storage.path={afile / 'runs'}", f"storage.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match=r"storage\.path=.*cannot be written \(Not a directory"):
        runner.run_study(cfg, log=lambda line: None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_storage_path_stops_the_study_before_ray(tmp_path, no_ray):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    cfg = compose_study([f"storage.path={runs}", f"storage.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match=r"storage\.path=.*cannot be written \(Permission denied"):
        runner.run_study(cfg, log=lambda line: None)


_HOLDER = textwrap.dedent("""
    import sys, time
    from medguna.study.lock import study_lock
    with study_lock(sys.argv[1], log=lambda line: None):
        print("held", flush=True)
        time.sleep(60)
""")


def _start_holder(study_dir: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(study_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_driver_is_refused_naming_the_first_then_takes_over_once_it_is_killed(tmp_path):
    import socket

    study_dir = tmp_path / "runs" / "mine"
    holder = _start_holder(study_dir)
    try:
        with pytest.raises(StudyLocked) as refused, study_lock(study_dir, log=lambda line: None):
            pass
        message = str(refused.value)
        assert f"PID {holder.pid}" in message and f"host {socket.gethostname()}" in message
        assert "started 20" in message and "already running" in message
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the record of the dead driver stays in the file
        holder.wait()
    assert json.loads((study_dir / LOCK_FILE).read_text())["pid"] == holder.pid
    lines: list[str] = []
    with study_lock(study_dir, log=lines.append) as record:
        assert record["pid"] == os.getpid()
        assert json.loads((study_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(lines) == 1 and "no longer running" in lines[0] and f"PID {holder.pid}" in lines[0]
    assert (study_dir / LOCK_FILE).read_text() == ""  # released cleanly: nothing to take over next time
    with study_lock(study_dir, log=lines.append):
        pass
    assert len(lines) == 1


def test_a_study_already_running_is_refused_before_ray(tmp_path, no_ray):
    cfg = compose_study([f"storage.path={tmp_path / 'runs'}", f"storage.cache_dir={tmp_path / 'cache'}",
                         "study.name=busy"])
    holder = _start_holder(tmp_path / "runs" / "busy")
    try:
        with pytest.raises(StudyLocked, match=f"PID {holder.pid}"):
            runner.run_study(cfg, fresh=True, log=lambda line: None)
    finally:
        holder.kill()
        holder.wait()


class _TuneLikeFit:
    """A tuner whose fit() installs Ray Tune's real signal handling and gets a Ctrl-C just as its
    last trial finished, which is the moment Tune used to swallow it."""

    fitted: ClassVar[list[str]] = []

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def fit(self):
        from ray.tune.tune import _setup_signal_catching

        _setup_signal_catching()
        type(self).fitted.append(self.dataset)
        if len(self.fitted) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return []


def test_ctrl_c_after_one_dataset_finished_stops_the_whole_study(tmp_path, monkeypatch, stubbed_study):
    import ray

    _TuneLikeFit.fitted = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    cfg = stubbed_study(_TuneLikeFit)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(runner.StudyInterrupted):
        runner.run_study(cfg, log=lambda line: None)
    assert _TuneLikeFit.fitted == ["montgomery"]  # shenzhen never started
    study_dir = tmp_path / "runs" / cfg.study.name
    assert (study_dir / "montgomery" / COMPLETE_MARKER).is_file()
    assert not (study_dir / "shenzhen").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the driver's own handler is back
