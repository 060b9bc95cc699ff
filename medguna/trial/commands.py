"""`medguna trial`: one trial from the command line, composed from the same config as a study."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from medguna.errors import MedgunaError


def main(argv: list[str] | None = None) -> int:
    """`python -m medguna.trial [overrides]`: the same as `medguna trial [overrides]`."""
    from medguna.commandline import dispatch

    parser = argparse.ArgumentParser(prog="medguna")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return dispatch(parser, ["trial", *(sys.argv[1:] if argv is None else argv)])


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "trial",
        help="run one MedUnA trial (stage 1 + stage 2 + test) and print its metrics",
        description="Run one trial. Overrides use the study's Hydra syntax, e.g. "
                    "`medguna trial dataset=montgomery data.root=/data/MontgomerySet "
                    "model.checkpoint=/models/medclip method.prompt_length=32`. "
                    "With no data root and no checkpoint it runs on the synthetic stand-in "
                    "(under its modality's demo acquisition shift) and the shipped demonstration "
                    "encoder; model.checkpoint=test-size runs the random-weight test-size model.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides (key=value)")
    p.add_argument("--logdir", default=None,
                   help="TensorBoard folder (default: <storage.path>/trials/<dataset>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines: only the final JSON line")
    p.set_defaults(func=run_command)


def trial_overrides(overrides: list[str]) -> tuple[list[str], str]:
    """Map the single-trial shorthand `data.root=DIR` onto `data.roots.<dataset>=DIR`."""
    dataset = "shenzhen"
    for item in overrides:
        if item.startswith("dataset="):
            dataset = item.split("=", 1)[1]
    mapped = [f"data.roots.{dataset}=" + o.split("=", 1)[1] if o.startswith("data.root=") else o
              for o in overrides]
    return mapped, dataset


def run_command(args: argparse.Namespace) -> int:
    from medguna.compose import compose_study
    from medguna.config import control_banner
    from medguna.data.manifest import is_synthetic_root
    from medguna.data.shifts import acquisition_text
    from medguna.folders import check_writable_folder
    from medguna.models.demo_encoder import encoder_description
    from medguna.trial.loop import mixed_precision, run_trial
    from medguna.trial.reporting import PrintReporter, jsonable_row

    overrides, dataset = trial_overrides(list(args.overrides))
    study = compose_study(overrides, search=False)  # one trial: the study's search space plays no part
    cfg = study.trial_config(dataset).validate()
    check_writable_folder(study.storage.cache_dir, "storage.cache_dir")  # before any decoding
    log_dir = Path(args.logdir) if args.logdir else (
        Path(study.storage.path) / "trials" / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    if cfg.data.root is None:
        data_text = ("SYNTHETIC stand-in data (demonstration), "
                     + acquisition_text(cfg.data.synthetic_shift, dataset, cfg.data.synthetic_seed))
    elif is_synthetic_root(cfg.data.root):
        data_text = f"SYNTHETIC stand-in data at {cfg.data.root}"
    else:
        data_text = f"real data at {cfg.data.root}"
    print(f"[medguna] trial on {dataset}: {data_text}; "
          f"encoder {cfg.model.encoder} "
          f"{encoder_description(cfg.model)}; "
          f"variant {cfg.method.variant}; protocol {cfg.runtime.protocol}; mixed precision {mixed_precision(cfg)}; "
          + (f"{control}; " if (control := control_banner(cfg.runtime.control)) else "")
          + f"TensorBoard: {log_dir}",
          file=sys.stderr)
    reporter = PrintReporter(verbose=not args.quiet)
    try:
        final = run_trial(cfg, reporter, log_dir=log_dir)
    except MedgunaError as err:
        print(f"[medguna] trial failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    from medguna.trial.predictions import PREDICTIONS_FILE

    print(f"[medguna] per-image predictions (selected epoch and zero-shot): {log_dir / PREDICTIONS_FILE}",
          file=sys.stderr)
    print(json.dumps(jsonable_row(final), default=str))  # the machine-readable result, on stdout
    return 0
