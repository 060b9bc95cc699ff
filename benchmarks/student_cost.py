"""Stage-2 student cost per image at full MedCLIP size: prompt insertion and prompt length.

The floor of every stage-2 step is the prompted student's forward and backward through the frozen
Swin. This prints it for the reference's insertion and medguna's grid insertion, so the stage-2
ratios of run_benchmarks.py can be read against it. Random weights, nothing downloaded.

    python benchmarks/student_cost.py [--threads 2] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from medguna.models.medclip import build_medclip
from medguna.models.medclip_config import full_size_config
from medguna.models.prompted import prompted_image_features

CASES = (("reference", 113), ("grid", 113), ("grid", 16), ("grid", 0))


def ms_per_image(vision, pixels: torch.Tensor, insertion: str, length: int, repeats: int) -> float:
    """Best of `repeats` timed forward+backward passes (one untimed warm-up), per image."""
    prompts = (torch.rand(length, 96) * 0.1667 - 0.0833).requires_grad_(True) if length else None
    best = float("inf")
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        features = prompted_image_features(vision, pixels, prompts, insertion=insertion)
        if prompts is not None:
            features.sum().backward()
        if attempt:
            best = min(best, time.perf_counter() - started)
    return 1000 * best / pixels.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vision = build_medclip(full_size_config(), seed=0).vision_model.eval().requires_grad_(False)
    pixels = torch.rand(args.batch_size, 1, 224, 224)
    print(f"full-size MedCLIP vision tower, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, CPU")
    baseline = None
    for insertion, length in CASES:
        cost = ms_per_image(vision, pixels, insertion, length, args.repeats)
        baseline = baseline or cost
        what = "forward+backward" if length else "forward only (no prompts: nothing to train in the tower)"
        print(f"  {insertion:9s} prompt_length={length:3d}: {cost:7.1f} ms/image {what} "
              f"({cost / baseline:.2f}x the reference insertion at 113)", flush=True)


if __name__ == "__main__":
    main()
