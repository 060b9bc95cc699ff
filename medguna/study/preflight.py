"""Check a study's data folders and checkpoint before a cluster job starts Ray.

`python -m medguna.study.preflight [--run] --study NAME [overrides]` takes the arguments of
`studies/run.py`, composes the study's configuration as the study will, and runs, for each dataset of
the study whose root is set, `medguna data NAME --root ROOT --verify` (every image decoded, the split
written where the study reads it) and, when a checkpoint is set, `medguna check-model`. A wrong path
then ends a batch job in seconds, not after the queue wait and Ray's start. `--run` goes on to run
the study (`studies/run.py` with the same arguments) when every check passes, for launchers that run
a single command (a KubeRay RayJob's entrypoint).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from medguna.config import StudyConfig

RUN_SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "run.py"


def study_overrides(args: list[str]) -> list[str]:
    """The composition overrides of a `studies/run.py` command line: study=NAME and each key=value."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--study", default="chestxray")
    known, rest = parser.parse_known_args(args)
    return [f"study={known.study}", *(a for a in rest if not a.startswith("-") and "=" in a)]


def check_commands(cfg: StudyConfig) -> list[list[str]]:
    """The `medguna` commands (arguments after `medguna`) that check this study's data and model."""
    commands = []
    d = cfg.data
    for name in cfg.study.datasets:
        root = d.roots.get(name)
        if root:
            commands.append(["data", name, "--root", str(root),
                             "--split-dir", str(Path(cfg.storage.cache_dir) / "splits"),
                             "--split-seed", str(d.split_seed), "--val-fraction", str(d.val_fraction),
                             "--test-fraction", str(d.test_fraction), "--verify"])
    if cfg.model.builtin is None:  # a real checkpoint (not the shipped demonstration encoder)
        commands.append(["check-model", "--checkpoint", str(cfg.model.checkpoint), "--encoder", cfg.model.encoder,
                         *(["--tokenizer", str(cfg.model.tokenizer)] if cfg.model.tokenizer else [])])
    return commands


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run = "--run" in argv
    args = [a for a in argv if a != "--run"]
    from medguna.compose import compose_study
    from medguna.errors import MedgunaError

    try:
        cfg = compose_study(study_overrides(args))
    except MedgunaError as err:
        print(f"medguna pre-flight: error: {err}", file=sys.stderr)
        return 2
    commands = check_commands(cfg)
    if not commands:
        print("medguna pre-flight: no data roots or checkpoint set: the study runs its demonstration", flush=True)
    for command in commands:
        print(f"medguna pre-flight: medguna {' '.join(command)}", flush=True)
        status = subprocess.run([sys.executable, "-m", "medguna", *command], check=False).returncode
        if status:
            print(f"medguna pre-flight: `medguna {command[0]}` failed (above): fix the path and submit again; "
                  "Ray was not started", file=sys.stderr)
            return status
    sys.stdout.flush()
    if run:
        os.execv(sys.executable, [sys.executable, str(RUN_SCRIPT), *args])
    return 0


if __name__ == "__main__":
    sys.exit(main())
