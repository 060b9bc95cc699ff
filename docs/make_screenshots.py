#!/usr/bin/env python
"""Regenerate the README's pictures from the demonstration study: its report.html and TensorBoard.

    python docs/make_screenshots.py [--study-dir medguna_runs/chestxray] [--out docs]

Without --study-dir it first runs the demonstration (`python studies/run.py --study chestxray` with
no data and no checkpoint) into a temporary folder. It then writes the study's report, opens it and
a TensorBoard server on 127.0.0.1 in the system Chromium (`apt-get install chromium`; the dev
extra's Playwright drives it) and optuna-dashboard (the `dashboard` extra) on 127.0.0.1, and saves
report.png, report_parallel.png, tensorboard_hparams.png, tensorboard_scalars.png and
optuna_dashboard.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "study"))  # the browser plumbing the browser tests use


def run_demo(storage: Path) -> Path:
    from medguna.compose import compose_study
    from medguna.study.runner import run_study

    cfg = compose_study(["study=chestxray", f"storage.path={storage / 'runs'}",
                         f"storage.cache_dir={storage / 'cache'}"])
    return Path(run_study(cfg).study_dir)


def screenshots(study_dir: Path, out: Path) -> list[Path]:
    from browser_tools import browser_page, optuna_dashboard_server, tensorboard_server

    from medguna.analysis.report import write_report

    page_path = write_report([study_dir], progress=False).parent / "report.html"
    out.mkdir(parents=True, exist_ok=True)
    shots = [out / "report.png", out / "report_parallel.png", out / "tensorboard_hparams.png",
             out / "tensorboard_scalars.png", out / "optuna_dashboard.png"]
    with browser_page(width=1400, height=900) as page:
        page.goto(page_path.as_uri())
        page.screenshot(path=str(shots[0]))  # the summary: every dataset's answer
        page.locator("svg.parallel").first.screenshot(path=str(shots[1]))
    with tensorboard_server(study_dir) as url, browser_page(width=1700, height=720) as page:
        page.goto(f"{url}/#hparams")
        page.locator("tf-hparams-table-view vaadin-grid-cell-content").filter(
            has_text="adapter_width").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # let the table finish drawing its rows
        page.screenshot(path=str(shots[2]))
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(f"{url}/?tagFilter=%5Eval%2F#timeseries")  # the val/ group: validation per epoch
        page.locator("card-view").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots[3]))
    first = json.loads((study_dir / "study.json").read_text())["datasets"][0]
    with optuna_dashboard_server(study_dir / first / "optuna.db") as url, \
            browser_page(width=1400, height=900) as page:
        page.goto(f"{url}/dashboard/studies/1")
        page.get_by_text("Intermediate values").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots[4]))
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study-dir", type=Path, help="a finished study folder (default: run the demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        study_dir = args.study_dir or run_demo(Path(tmp))
        for path in screenshots(study_dir, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
