#!/usr/bin/env python
"""Trials per GPU-hour of the chestxray study at full size, with 1 and with 4 trials sharing a GPU.

    python benchmarks/study_throughput.py [--trials-at-once 1,4] [--samples 8] [--scale 2] [--work DIR]

Runs `studies/run.py --study chestxray` (Shenzhen, Montgomery, Guangzhou) on stand-ins at real
resolution with the full-size MedCLIP-ViT (random weights, released layout), in a Ray started for
the run, at the corrected method's full budget (stage-1 steps, 5 epochs, batch 50) and without ASHA
(every trial runs every epoch, so the settings compare like with like). For each value k of
--trials-at-once the study runs from an empty result folder with resources.gpus_per_trial=1/k (on a
machine without a GPU: cpus_per_trial=cores/k), after one untimed run that fills the image and
feature caches, so what is timed is trials, not decoding. Prints trials per GPU-hour (per machine-hour
without a GPU) for each k and writes results.json under --work. Run by hand, not by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import full_size_checkpoint, real_resolution_stand_in

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("shenzhen", "montgomery", "guangzhou")


def study_command(work: Path, roots: dict[str, Path], checkpoint: Path, storage: Path, *, samples: int,
                  trials_at_once: int, gpus: int, budget: dict[str, Any]) -> list[str]:
    cores = os.cpu_count() or 1
    if gpus:
        resources = [f"resources.gpus_per_trial={1 / trials_at_once:g}",
                     f"resources.cpus_per_trial={max(1, cores // (gpus * trials_at_once))}"]
    else:
        resources = ["resources.gpus_per_trial=0", f"resources.cpus_per_trial={max(1, cores // trials_at_once)}"]
    return [sys.executable, str(REPO / "studies" / "run.py"), "--study", "chestxray", "--fresh", "--no-report",
            f"storage.path={storage}", f"storage.cache_dir={work / 'cache'}", f"model.checkpoint={checkpoint}",
            *(f"data.roots.{name}={root}" for name, root in roots.items()),
            f"study.num_samples={samples}", f"study.demo_num_samples={samples}",
            "study.confirm_top=0", "study.demo_confirm_top=0", "search.scheduler=none",
            *(f"study.demo_method.{key}={value}" for key, value in budget.items()),
            *resources]


def finished_trials(storage: Path) -> int:
    count = 0
    for result in storage.rglob("result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        count += any("test_balanced_accuracy" in row for row in rows)
    return count


def run_study(command: list[str], cwd: Path, label: str) -> float:
    print(f"\n== {label} ==\n" + " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, check=False, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-4000:])
        raise SystemExit(f"{label} failed (exit {done.returncode})")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="folder for stand-ins, checkpoint and caches "
                        "(default: a new temporary folder; reuse one to skip writing them again)")
    parser.add_argument("--trials-at-once", type=lambda text: [int(v) for v in text.split(",") if v],
                        default=[1, 4], help="trials sharing one GPU (comma-separated; default 1,4)")
    parser.add_argument("--samples", type=int, default=8, help="trials per dataset (default 8)")
    parser.add_argument("--scale", type=float, default=2.0, help="stand-in size relative to medguna's "
                        "synthetic default (2: about 200 Shenzhen images)")
    parser.add_argument("--stage1-steps", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="medguna-throughput-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count()
    device = torch.cuda.get_device_name(0) if gpus else "no GPU"
    roots = {name: real_resolution_stand_in(name, work / "data" / name, scale=args.scale) for name in DATASETS}
    checkpoint = full_size_checkpoint(work / "medclip-full-random")
    budget = {"stage1_steps": args.stage1_steps, "stage2_epochs": args.epochs, "batch_size": args.batch_size}
    common = {"samples": args.samples, "gpus": gpus, "budget": budget}

    warm = study_command(work, roots, checkpoint, work / "runs-warm-up", **{**common, "samples": 1},
                         trials_at_once=1)
    run_study(warm, work, "untimed warm-up: fills the image and feature caches")
    results: dict[str, Any] = {"device": device, "gpus": gpus, "cores": os.cpu_count(), "torch": torch.__version__,
                               "samples_per_dataset": args.samples, "scale": args.scale, "budget": budget, "runs": {}}
    for k in args.trials_at_once:
        storage = work / f"runs-{k}-at-once"
        seconds = run_study(study_command(work, roots, checkpoint, storage, trials_at_once=k, **common), work,
                            f"{k} trial(s) at once per {'GPU' if gpus else 'machine'}")
        trials = finished_trials(storage)
        hours = seconds / 3600 * max(gpus, 1)
        results["runs"][str(k)] = {"seconds": seconds, "trials": trials, "trials_per_hour": trials / hours}
        (work / "results.json").write_text(json.dumps(results, indent=2))

    unit = "GPU-hour" if gpus else "machine-hour (no GPU)"
    print(f"\nchestxray study, full-size MedCLIP (random weights), {device}, {gpus} GPU(s), "
          f"{os.cpu_count()} cores; {args.samples} trials per dataset, budget {budget}, no ASHA")
    for k, run in results["runs"].items():
        print(f"  {k} trial(s) at once: {run['trials']} trials in {run['seconds']:.0f} s = "
              f"{run['trials_per_hour']:.1f} trials per {unit}")
    print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
