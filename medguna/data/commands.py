"""`medguna synth` and `medguna data`: write a synthetic stand-in, inspect a dataset's manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from medguna.config import StorageConfig
from medguna.data.datasets import DATASETS
from medguna.data.manifest import load_manifest, missing_classes
from medguna.data.shifts import NO_SHIFT, SHIFTS, canonical_shift
from medguna.data.synthetic import synthesize
from medguna.data.verify import unreadable_images, unreadable_message
from medguna.errors import MedgunaError

# Where studies and trials keep split files with the default storage.cache_dir, so `medguna data`
# shows (and, the first time, writes) the very split they will use.
DEFAULT_SPLIT_DIR = str(Path(StorageConfig.cache_dir) / "splits")


def _report_error(error: MedgunaError) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def run_synth(args: argparse.Namespace) -> int:
    """Write a synthetic stand-in of args.dataset into args.out."""
    try:
        root = synthesize(args.dataset, args.out, seed=args.seed, scale=args.scale,
                          image_size=args.image_size, progress=True, shift=args.shift)
    except MedgunaError as error:
        return _report_error(error)
    shift = canonical_shift(args.shift, DATASETS[args.dataset].modality)
    print(f"SYNTHETIC stand-in of {args.dataset} written to {root} (acquisition shift: {shift})")
    print(f"load it with: medguna data {args.dataset} --root {root}")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """Print the manifest of args.dataset under args.root: counts per split and class, split file."""
    try:
        manifest = load_manifest(args.dataset, args.root, args.split_dir, val_fraction=args.val_fraction,
                                 test_fraction=args.test_fraction, split_seed=args.split_seed)
    except MedgunaError as error:
        return _report_error(error)
    source = "SYNTHETIC stand-in" if manifest.is_synthetic else "real data"
    print(f"{manifest.spec.name} at {manifest.root} ({source})")
    print(f"classes (label order): {', '.join(manifest.spec.classes)}")
    with pl.Config(tbl_cols=-1, tbl_width_chars=160):  # every class column, even ISIC's seven
        print(manifest.counts())
    print(f"split file: {manifest.split_file}")
    for split, absent in missing_classes(manifest).items():
        print(f"WARNING: the {split} split has no {', '.join(absent)} image: its balanced accuracy ignores "
              "that class and its AUROC is undefined; a study refuses it unless "
              "data.allow_missing_classes=true", file=sys.stderr)
    print(f"fingerprint: {manifest.fingerprint}")
    if args.verify:
        paths = manifest.table["path"].to_list()
        problems = unreadable_images(paths, progress=True)
        if problems:
            print(f"error: {unreadable_message(problems)}", file=sys.stderr)
            return 2
        print(f"verified: all {len(paths)} images decode")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `synth` and `data` on the top-level CLI; each sets func(args) -> exit code."""
    datasets = sorted(DATASETS)
    synth = subparsers.add_parser("synth", help="write a small synthetic stand-in of a dataset")
    synth.add_argument("dataset", choices=datasets)
    synth.add_argument("--out", type=Path, required=True, help="new or empty folder to write into")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=float, default=1.0, help="multiplies the default image counts")
    synth.add_argument("--image-size", type=int, default=None, help="longer image side in pixels")
    synth.add_argument(
        "--shift", default=NO_SHIFT,
        help="acquisition shift: 'none', 'demo' (the modality's preset target domain) or "
             f"name=strength pairs in [0, 1], comma-separated, from: {', '.join(SHIFTS)}; e.g. gamma=0.6,noise=0.4")
    synth.set_defaults(func=run_synth)

    data = subparsers.add_parser("data", help="show a dataset's images per split and class")
    data.add_argument("dataset", choices=datasets)
    data.add_argument("--root", type=Path, required=True, help="folder holding the official layout")
    data.add_argument("--split-dir", type=Path, default=Path(DEFAULT_SPLIT_DIR),
                      help=f"where split files are kept (default: ./{DEFAULT_SPLIT_DIR}, the studies' "
                      "default; use <storage.cache_dir>/splits if you set storage.cache_dir)")
    data.add_argument("--split-seed", type=int, default=0)
    data.add_argument("--val-fraction", type=float, default=0.2)
    data.add_argument("--test-fraction", type=float, default=0.2)
    data.add_argument("--verify", action="store_true",
                      help="decode every image (in parallel) and list each unreadable file")
    data.set_defaults(func=run_data)
