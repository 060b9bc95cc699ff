"""Running one of medguna's argparse commands: Hydra-style overrides wherever they stand, and a
medguna error as one line and exit status 2. Shared by `medguna` and `python -m medguna.trial`."""

from __future__ import annotations

import argparse
import sys

from medguna.errors import MedgunaError


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None, command: str | None = None) -> int:
    """Parse `argv` and run the chosen command's `func`; `command` names it in error lines when
    the parser has no subcommands."""
    # Overrides may follow options (`medguna trial --quiet method.batch_size=8`): argparse leaves
    # positionals after an option unparsed, so they are appended to the command's overrides here.
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args) or 0)
    except MedgunaError as err:
        print(f"medguna {command or args.command}: error: {err}", file=sys.stderr)
        return 2
