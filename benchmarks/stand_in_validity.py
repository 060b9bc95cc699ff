#!/usr/bin/env python
"""Does each stand-in pass the demonstration's validity rule? (docs/demonstration.md §1; by hand)

    python benchmarks/stand_in_validity.py [--datasets shenzhen,...] [--draw-seed 1000]
                                           [--split-seed 1000] [--scale 1] [--shift demo]
                                           [--work DIR]

Per stand-in, on the design draw (data.synthetic_seed 1000, data.split_seed 1000: images no
benchmark run uses), under its modality's `demo` shift (or --shift), with the shipped
DEMONSTRATION encoder: the encoder's zero-shot balanced accuracy on the validation split, a
supervised linear probe's (fit on the frozen features of the training split, scored on
validation), the headroom between them, the validation split's size per class, and PASS / FAIL per
rule: (a) zero-shot in [chance + 0.05, 0.85] (0.55 for a binary stand-in), (b) headroom >= 0.10,
(c) >= 60 validation images and >= 20 per class (binary) or >= 5 per class (multi-class). No MedUnA
trial runs: only the frozen features a trial would cache. SYNTHETIC data, not MedCLIP.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from medguna.compose import compose_study
from medguna.data.datasets import DATASETS
from medguna.method.metrics import confusion_matrix
from medguna.method.zeroshot import zero_shot_logits
from medguna.trial.prepare import prepare_shared_work

# The rule's numbers (docs/demonstration.md §1), defined once here.
ZERO_SHOT_ABOVE_CHANCE, ZERO_SHOT_CEILING = 0.05, 0.85
MIN_HEADROOM = 0.10
MIN_VAL_IMAGES, MIN_PER_CLASS_BINARY, MIN_PER_CLASS_MULTI = 60, 20, 5
PROBE_L2, PROBE_MAX_ITER = 1e-3, 500


def linear_probe(train: torch.Tensor, train_labels: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-weighted multinomial logistic regression on L2-normalised features (L-BFGS, L2 on W)."""
    x = F.normalize(train.float(), dim=1)
    counts = torch.bincount(train_labels, minlength=classes).float()
    weights = counts.sum() / (classes * counts.clamp(min=1))
    weight = torch.zeros(classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=PROBE_MAX_ITER, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, train_labels, weight=weights) + PROBE_L2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weight.detach(), bias.detach()


def balanced_accuracy(predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """Mean recall over the classes present, as every trial reports it."""
    matrix = confusion_matrix(labels.numpy(), predictions.numpy(), classes)
    present = matrix.sum(axis=1) > 0
    return float((matrix.diagonal()[present] / matrix.sum(axis=1)[present]).mean())


def probe_predictions(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return (F.normalize(features.float(), dim=1) @ weight.T + bias).argmax(dim=1)


def verdicts(classes: int, zero_shot: float, probe: float, val_counts: list[int]) -> dict[str, bool]:
    per_class = MIN_PER_CLASS_BINARY if classes == 2 else MIN_PER_CLASS_MULTI
    return {
        "a_zero_shot_in_range": 1 / classes + ZERO_SHOT_ABOVE_CHANCE <= zero_shot <= ZERO_SHOT_CEILING,
        "b_headroom": probe - zero_shot >= MIN_HEADROOM,
        "c_validation_split": sum(val_counts) >= MIN_VAL_IMAGES and min(val_counts) >= per_class,
    }


def measure(dataset: str, overrides: list[str]) -> dict:
    study = compose_study(overrides, search=False)
    cfg = study.trial_config(dataset).validate()
    shared = prepare_shared_work(cfg, device=torch.device("cpu"), autocast=contextlib.nullcontext,
                                 image_dir=Path(cfg.data.cache_dir) / "images")
    classes = shared.spec.num_classes
    labels, feats = shared.labels, shared.clean_features
    zero = {split: balanced_accuracy(zero_shot_logits(feats[split], shared.class_prototypes).argmax(1),
                                     labels[split], classes) for split in ("val", "test")}
    weight, bias = linear_probe(feats["train"], labels["train"], classes)
    probe = {split: balanced_accuracy(probe_predictions(weight, bias, feats[split]), labels[split], classes)
             for split in ("val", "test")}
    val_counts = torch.bincount(labels["val"], minlength=classes).tolist()
    return {
        "dataset": dataset, "classes": classes, "shift": cfg.data.synthetic_shift,
        "train": len(labels["train"]), "val_counts": val_counts, "test": len(labels["test"]),
        "zero_shot_val": zero["val"], "probe_val": probe["val"], "headroom": probe["val"] - zero["val"],
        "zero_shot_test": zero["test"], "probe_test": probe["test"],
        **verdicts(classes, zero["val"], probe["val"], val_counts),
    }


def markdown(rows: list[dict]) -> str:
    lines = [("| stand-in | train | val per class | zero-shot (val) | probe (val) | headroom | "
              "(a) zero-shot | (b) headroom | (c) val split | zero-shot / probe (test) |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    word = {True: "PASS", False: "FAIL"}
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['train']} | {'/'.join(map(str, r['val_counts']))} | {r['zero_shot_val']:.3f} | "
            f"{r['probe_val']:.3f} | {r['headroom']:+.3f} | {word[r['a_zero_shot_in_range']]} | "
            f"{word[r['b_headroom']]} | {word[r['c_validation_split']]} | "
            f"{r['zero_shot_test']:.3f} / {r['probe_test']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--draw-seed", type=int, default=1000, help="data.synthetic_seed (1000: the design draw)")
    parser.add_argument("--split-seed", type=int, default=1000, help="data.split_seed (1000: the design draw's)")
    parser.add_argument("--scale", type=float, default=1.0, help="data.synthetic_scale")
    parser.add_argument("--shift", default="demo", help="data.synthetic_shift (demo: each modality's preset)")
    parser.add_argument("--work", type=Path, default=None, help="cache folder (default: a temp dir)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="medguna-validity-"))
    overrides = [f"storage.cache_dir={work}", f"data.synthetic_seed={args.draw_seed}",
                 f"data.split_seed={args.split_seed}", f"data.synthetic_scale={args.scale}",
                 f"data.synthetic_shift='{args.shift}'"]
    rows = [measure(dataset, overrides) for dataset in args.datasets.split(",")]
    print(f"SYNTHETIC stand-ins, DEMONSTRATION ENCODER (not MedCLIP); draw {args.draw_seed}, split seed "
          f"{args.split_seed}, scale {args.scale:g}, shift {args.shift}")
    print(markdown(rows))
    failed = [r["dataset"] for r in rows if not all(r[k] for k in ("a_zero_shot_in_range", "b_headroom",
                                                                    "c_validation_split"))]
    print("every stand-in passes" if not failed else f"FAIL: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
