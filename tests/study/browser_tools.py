"""A real browser and a real TensorBoard for tests: Debian's Chromium driven by Playwright.

Playwright's own browser download is not reachable here, so it launches the system Chromium
(`apt-get install chromium`); tests skip, saying so, only when that binary is absent.
Screenshots go to $MEDGUNA_SCREENSHOTS when set (CI keeps them), else to the test's tmp folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    found = [p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)]
    return found[0] if found else shutil.which("chromium")


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no system Chromium: install it with `apt-get install -y chromium` "
                    "(Playwright's own browser download is not used)")
    return path


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as playwright:
        # As root Chromium's sandbox cannot start; the pages are local files and a local server.
        browser = playwright.chromium.launch(executable_path=executable, chromium_sandbox=False,
                                             args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def screenshot_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("MEDGUNA_SCREENSHOTS", tmp_path / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard_server(logdir: Path, timeout_s: float = 60.0):
    """`tensorboard --logdir logdir` on 127.0.0.1 and a free port; yields its URL, stops it after."""
    def has_a_run(url: str) -> bool:
        with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as response:
            return bool(json.loads(response.read()))

    port = free_port()
    with _local_server("TensorBoard", f"http://127.0.0.1:{port}", has_a_run, timeout_s,
                       [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                        "127.0.0.1", "--port", str(port), "--load_fast", "false"]) as url:
        yield url


@contextlib.contextmanager
def optuna_dashboard_server(database: Path, timeout_s: float = 60.0):
    """`optuna-dashboard sqlite:///<database>` on 127.0.0.1 and a free port; yields its URL.
    Skips when the `dashboard` extra is not installed."""
    pytest.importorskip("optuna_dashboard", reason="the `dashboard` extra is not installed")

    def answers(url: str) -> bool:
        with urllib.request.urlopen(f"{url}/api/studies", timeout=2):
            return True

    port = free_port()
    # The console script's own entry point, run by this interpreter.
    with _local_server("optuna-dashboard", f"http://127.0.0.1:{port}", answers, timeout_s,
                       [sys.executable, "-c",
                        "import sys; from optuna_dashboard._cli import main; sys.exit(main())",
                        f"sqlite:///{database}", "--host", "127.0.0.1", "--port", str(port)]) as url:
        yield url


@contextlib.contextmanager
def _local_server(name: str, url: str, ready, timeout_s: float, command: list[str]):
    """Runs `command`, a server at `url`; yields the URL once `ready(url)` is true, stops it after."""
    # Its log goes to a file, not a pipe: a full pipe would block the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if ready(url):
                        break
                except OSError:  # not listening yet
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{name} did not start at {url}: {log.read().decode()[-2000:]}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
