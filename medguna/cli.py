"""The `medguna` command: data, synthetic stand-ins, models, single trials, LLM descriptions."""

from __future__ import annotations

import argparse
import sys

from medguna.commandline import dispatch


def build_parser() -> argparse.ArgumentParser:
    from medguna.data.commands import add_commands as add_data
    from medguna.models.commands import add_commands as add_models
    from medguna.pretraining.commands import add_commands as add_pretraining
    from medguna.text.describe.commands import add_commands as add_describe
    from medguna.trial.commands import add_commands as add_trial

    parser = argparse.ArgumentParser(
        prog="medguna",
        description="MedUnA hyperparameter studies. The study runner is `python studies/run.py --study NAME`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_data(sub)
    add_models(sub)
    add_pretraining(sub)
    add_trial(sub)
    add_describe(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
