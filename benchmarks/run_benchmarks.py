#!/usr/bin/env python
"""medguna's performance figures, side by side in one run on one machine (run by hand, not by CI).

    python benchmarks/run_benchmarks.py [--work DIR] [--quick] [--skip-study]

(a) stage-2 images/s: a reference-style loop vs medguna's run_trial, test-size and full-size MedCLIP;
(b) wall time of a small study with caches on vs off (runtime.caches=false);
(c) the share of a trial spent outside training (setup_seconds / trial_seconds);
(d) prompt-free vs prompted trial time.
With --profile-steps N, one more trial per model size runs under torch.profiler and its top
operators/kernels are printed (runtime.profile_steps); --compile picks runtime.compile_student.
Prints every figure as a ratio with the machine's description; writes results.json under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import STAND_IN_FILES, full_size_checkpoint, real_resolution_stand_in
from reference_loop import reference_style_images_per_second

from medguna.config import DataConfig, MethodConfig, ModelConfig, RuntimeConfig, TrialConfig
from medguna.trial.loop import run_trial
from medguna.trial.prepare import get_encoder, load_trial_manifest
from medguna.trial.reporting import PrintReporter

REPO = Path(__file__).resolve().parents[1]
PROMPT_LENGTH = 113  # the reference's prompt length, in both loops


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": device, "load_average_1min": os.getloadavg()[0]}


# Set from the command line: how the student is compiled in every medguna trial timed here.
RUNTIME: dict[str, Any] = {"compile_student": "auto"}


def trial_config(root: Path, cache_dir: Path, checkpoint: Path | None, *, batch_size: int, epochs: int,
                 prompt_length: int = PROMPT_LENGTH, profile_steps: int = 0) -> TrialConfig:
    return TrialConfig(
        data=DataConfig(dataset="shenzhen", root=str(root), cache_dir=str(cache_dir)),
        model=ModelConfig(checkpoint=None if checkpoint is None else str(checkpoint)),
        method=MethodConfig(stage1_steps=50, stage2_epochs=epochs, batch_size=batch_size,
                            prompt_length=prompt_length, description_source="templates"),
        runtime=RuntimeConfig(eval_batch_size=16, profile_steps=profile_steps, **RUNTIME),
    ).validate()


def timed_trial(cfg: TrialConfig, log_dir: Path | None = None) -> dict[str, Any]:
    """One run_trial; its per-epoch rows give stage-2 images/s, warm epochs (2..) only."""
    reporter = PrintReporter(verbose=False)
    started = time.perf_counter()
    final = run_trial(cfg, reporter, log_dir=log_dir)
    rows = reporter.rows
    warm = [row["images_per_second"] for row in rows[1:]] or [rows[0]["images_per_second"]]
    return {"wall_seconds": time.perf_counter() - started, "trial_seconds": final["trial_seconds"],
            "setup_seconds": final["setup_seconds"], "setup_share": final["setup_share"],
            "images_per_second": sum(warm) / len(warm), "peak_memory_mb": final["peak_memory_mb"],
            "student_compile": final.get("student_compile", "")}


def stage2_figures(name: str, root: Path, work: Path, checkpoint: Path | None, *, batch_size: int,
                   epochs: int, reference_steps: int, prompt_free: bool, other_lengths: list[int],
                   profile_steps: int) -> dict[str, Any]:
    """(a), (c) and, if asked, (d) for one model size; images/s at other prompt lengths; a profile."""
    print(f"\n== {name}: medguna trials (cold cache, then warm) ==", flush=True)
    cfg = trial_config(root, work / f"cache-{name}", checkpoint, batch_size=batch_size, epochs=epochs)
    out: dict[str, Any] = {"cold": timed_trial(cfg), "warm": timed_trial(cfg)}
    out["by_prompt_length"] = {}
    for length in other_lengths:
        print(f"== {name}: medguna trial at prompt length {length} ==", flush=True)
        out["by_prompt_length"][str(length)] = timed_trial(trial_config(
            root, work / f"cache-{name}", checkpoint, batch_size=batch_size, epochs=epochs, prompt_length=length))
    if profile_steps:
        print(f"== {name}: a profiled trial ({profile_steps} steps) ==", flush=True)
        logs = work / f"profile-{name}"
        timed_trial(trial_config(root, work / f"cache-{name}", checkpoint, batch_size=batch_size, epochs=1,
                                 profile_steps=profile_steps), log_dir=logs)
        out["profile"] = str(logs / "profile.txt")
    print(f"== {name}: reference-style loop ==", flush=True)
    encoder = get_encoder(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder.to(device)
    manifest = load_trial_manifest(cfg)
    out["reference_images_per_second"] = reference_style_images_per_second(
        encoder, manifest.paths("train"), manifest.spec.num_classes, batch_size=batch_size,
        steps=reference_steps, prompt_length=PROMPT_LENGTH, device=device)
    if prompt_free:
        print(f"== {name}: prompt-free trials (first builds the feature bank) ==", flush=True)
        free = trial_config(root, work / f"cache-{name}", checkpoint, batch_size=batch_size, epochs=epochs,
                            prompt_length=0)
        out["prompt_free_first"] = timed_trial(free)
        out["prompt_free_warm"] = timed_trial(free)
    return out


def warm_up_imports(work: Path) -> None:
    """Start Ray and import the study code once, untimed: the first timed study would otherwise
    also pay for reading Ray, torch and transformers from a cold disk cache."""
    code = ("import ray, medguna.study.runner, medguna.trial.loop; "
            "ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=work, capture_output=True)


def study_wall_seconds(idrid_root: Path, work: Path, caches: bool, samples: int) -> dict[str, Any]:
    """(b): `studies/run.py --study fundus` from an empty cache, caches on or off; trial setup shares."""
    label = "on" if caches else "off"
    storage, cache = work / f"study-{label}" / "runs", work / f"study-{label}" / "cache"
    command = [sys.executable, str(REPO / "studies" / "run.py"), "--study", "fundus", "--fresh", "--no-report",
               f"storage.path={storage}", f"storage.cache_dir={cache}", f"data.roots.idrid={idrid_root}",
               f"runtime.caches={'true' if caches else 'false'}", f"study.demo_num_samples={samples}",
               "study.demo_method.stage1_steps=100", "study.demo_method.stage2_epochs=2",
               "study.demo_method.batch_size=16", "search.scheduler=none"]
    print(f"\n== small study, caches {label} ==", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, check=False, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:])
        raise SystemExit(f"study with caches {label} failed (exit {done.returncode})")
    shares = []
    for result in storage.rglob("result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        finals = [row for row in rows if "setup_share" in row]
        if finals:
            shares.append(finals[-1]["setup_share"])
    return {"wall_seconds": seconds, "trials": len(shares),
            "mean_setup_share": sum(shares) / len(shares) if shares else float("nan")}


def ratio_line(label: str, ours: float, theirs: float, unit: str, target: str) -> str:
    ratio = ours / theirs if theirs else float("nan")
    return f"  {label:<52} {ours:>10.3g} vs {theirs:>10.3g} {unit:<8} ratio {ratio:>7.2f}x  (target {target})"


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = ["", "=" * 100,
             (f"machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, "
             f"device {m['device']}; load average {m['load_average_1min']:.1f} at start, "
             f"{results['load_average_end']:.1f} at end"),
             (f"stage 2 at prompt length {PROMPT_LENGTH}, stand-ins at {results['image_side']} px, "
             f"total benchmark time {results['total_seconds']:.0f} s"), ""]
    for name, size in results["sizes"].items():
        lines.append(f"[{name} MedCLIP]")
        gpu = m["device"] != "cpu"
        lines.append(ratio_line("(a) stage-2 images/s: medguna vs reference-style",
                                size["warm"]["images_per_second"], size["reference_images_per_second"],
                                "img/s", ">= 3x on GPU" if gpu else ">= 1.6x on CPU at full size"))
        for length, t in size.get("by_prompt_length", {}).items():
            lines.append(f"  (a) stage-2 images/s at prompt length {length}: {t['images_per_second']:.3g} "
                         f"(student_compile {t['student_compile']})")
        if "profile" in size:
            lines.append(f"  profile at prompt length {PROMPT_LENGTH}: {size['profile']}")
        for state in ("cold", "warm"):
            t = size[state]
            lines.append(f"  (c) {state} trial: setup {t['setup_seconds']:.1f} s of {t['trial_seconds']:.1f} s "
                         f"= {100 * t['setup_share']:.0f}% outside training; peak memory {t['peak_memory_mb']:.0f} MB")
        if "prompt_free_warm" in size:
            free, first = size["prompt_free_warm"], size["prompt_free_first"]
            lines.append(ratio_line("(d) trial seconds: prompted vs prompt-free (warm bank)",
                                    size["warm"]["trial_seconds"], free["trial_seconds"], "s", "-"))
            lines.append(ratio_line("(d) stage-2 images/s: prompt-free vs prompted",
                                    free["images_per_second"], size["warm"]["images_per_second"], "img/s",
                                    ">= 50x"))
            lines.append(f"  (d) first prompt-free trial (builds the bank once per dataset): "
                         f"{first['trial_seconds']:.1f} s")
        lines.append("")
    if "study" in results:
        on, off = results["study"]["on"], results["study"]["off"]
        lines.append(f"[small study: fundus (IDRiD stand-in, {results['study'].get('images', '?')} images at "
                     f"{results['image_side']} px), {on['trials']} trials, test-size MedCLIP]")
        lines.append(ratio_line("(b) study wall time: caches off vs on (on = cold start)",
                                off["wall_seconds"], on["wall_seconds"], "s", ">= 2x"))
        lines.append(f"  (c) mean setup share per trial: {100 * on['mean_setup_share']:.0f}% with caches, "
                     f"{100 * off['mean_setup_share']:.0f}% without")
    lines.append("=" * 100)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="folder for data, checkpoints, caches "
                        "(default: a new temporary folder; reuse one to skip writing the fixtures again)")
    parser.add_argument("--quick", action="store_true", help="test-size model only (about a minute)")
    parser.add_argument("--skip-study", action="store_true", help="skip (b), the study with caches on/off")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--reference-steps", type=int, default=3, help="timed reference-style steps")
    parser.add_argument("--study-samples", type=int, default=4)
    parser.add_argument("--study-scale", type=float, default=0.5, help="size of the IDRiD stand-in for (b) "
                        "relative to medguna's synthetic default (0.5: 52 images; the real set has 516, about 5)")
    parser.add_argument("--skip-stage2", action="store_true", help="measure only (b), the study")
    parser.add_argument("--scale", type=float, default=0.4, help="size of the Shenzhen stand-in relative to "
                        "medguna's synthetic default (0.4: 33 images, enough for 2 CPU cores; on a GPU use 4 "
                        "or more so an epoch is many batches)")
    parser.add_argument("--prompt-lengths", type=lambda text: [int(v) for v in text.split(",") if v],
                        default=[16], help="more prompt lengths to time medguna's stage 2 at, besides the "
                        f"reference's {PROMPT_LENGTH} (comma-separated; default 16, medguna's default)")
    parser.add_argument("--compile", choices=("auto", "off", "inductor", "aot_eager"), default="auto",
                        help="runtime.compile_student of the medguna trials (auto: inductor on a GPU)")
    parser.add_argument("--profile-steps", type=int, default=0, help="> 0: one more trial per model size "
                        "under torch.profiler for this many steps; prints where profile.txt is")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's "
                        "default). On a machine other jobs are using, 1 avoids OpenMP threads spinning "
                        "on each other, which made timings swing 10x here")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    RUNTIME["compile_student"] = args.compile

    work = (args.work or Path(tempfile.mkdtemp(prefix="medguna-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "image_side": 3000, "sizes": {}}
    print(f"work folder: {work}\nmachine: {results['machine']}", flush=True)
    if not args.skip_stage2:
        shenzhen = real_resolution_stand_in("shenzhen", work / "data" / "shenzhen", scale=args.scale)
        results["sizes"]["test-size"] = stage2_figures(
            "test-size", shenzhen, work, None, batch_size=args.batch_size, epochs=3,
            reference_steps=max(args.reference_steps, 4), prompt_free=args.quick,
            other_lengths=args.prompt_lengths, profile_steps=args.profile_steps)
    if not args.quick and not args.skip_stage2:
        checkpoint = full_size_checkpoint(work / "medclip-full-random")
        results["sizes"]["full-size"] = stage2_figures(
            "full-size", shenzhen, work, checkpoint, batch_size=args.batch_size, epochs=2,
            reference_steps=args.reference_steps, prompt_free=True,
            other_lengths=args.prompt_lengths, profile_steps=args.profile_steps)
    if not args.skip_study:
        idrid = real_resolution_stand_in("idrid", work / "data" / f"idrid-{args.study_scale:g}",
                                         scale=args.study_scale)
        warm_up_imports(work)
        results["study"] = {"on": study_wall_seconds(idrid, work, True, args.study_samples),
                            "off": study_wall_seconds(idrid, work, False, args.study_samples),
                            "images": len(list(idrid.glob(STAND_IN_FILES["idrid"]))),
                            "samples": args.study_samples}
    results["total_seconds"] = time.perf_counter() - started
    results["load_average_end"] = os.getloadavg()[0]
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
