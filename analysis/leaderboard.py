"""Leaderboards, effect tables and figures from one or many study folders.

    python analysis/leaderboard.py <study_dir> [<study_dir> ...] [--out DIR] [--metric NAME] [--open]

Writes leaderboard_<dataset>, leaderboard_across, effects_<param>, importance_<dataset> and seeds
as Markdown, CSV and Parquet, figures/*.png, index.md and report.html (all of it in one
self-contained page; default DIR: <first study_dir>/analysis), and prints the top rows of each
leaderboard. --open opens report.html in the default browser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medguna.analysis.loading import load_results
from medguna.analysis.report import across_text, build_report, leaderboard_text
from medguna.errors import MedgunaError
from medguna.results import DEFAULT_METRIC, HEADLINE_METRICS

TOP_ROWS = 5


def open_in_browser(page: Path) -> None:
    import webbrowser

    if not webbrowser.open(page.resolve().as_uri()):
        print(f"no web browser found: open {page} yourself", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dirs", nargs="+", type=Path, help="<storage>/<study> folders")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: <first study_dir>/analysis)"
    )
    parser.add_argument(
        "--metric",
        choices=HEADLINE_METRICS,
        default=DEFAULT_METRIC,
        help="headline test metric for gains over zero-shot",
    )
    parser.add_argument("--open", action="store_true", help="open report.html in the web browser")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out or args.study_dirs[0] / "analysis"
    try:
        results = load_results(args.study_dirs)
        report = build_report(results, out_dir, args.metric)
    except MedgunaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(leaderboard_text(results, TOP_ROWS, args.metric))
    print(across_text(report.tables["leaderboard_across"], TOP_ROWS, args.metric))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {report.index}\npage:   {report.html}")
    if args.open:
        open_in_browser(report.html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
