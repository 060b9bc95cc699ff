"""`medguna pretrain-demo`: rebuild the demonstration encoder from its recipe."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path


def run_pretrain_demo(args: argparse.Namespace) -> int:
    from medguna.pretraining.build import build_demo_encoder
    from medguna.pretraining.demo_encoder import PretrainRecipe

    overrides = {f.name: getattr(args, f.name) for f in fields(PretrainRecipe)
                 if getattr(args, f.name, None) is not None}
    recipe = PretrainRecipe(**overrides)
    print(f"[medguna] pretraining the demonstration encoder ({recipe}) into {args.out}; "
          "synthetic drawings only: it is not MedCLIP")
    if args.image_tower_from is not None:
        print(f"[medguna] reusing the image tower of {args.image_tower_from} (phases 1-2, same recipe); "
              "running phase 3 (text tower) only")
    out = build_demo_encoder(args.out, recipe, progress=True, image_tower_from=args.image_tower_from)
    print(f"[medguna] wrote {out}; use it with model.checkpoint={out} (results are labelled with its "
          "recipe: synthetic pretraining, not MedCLIP)")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from medguna.pretraining.demo_encoder import PretrainRecipe

    parser = subparsers.add_parser(
        "pretrain-demo",
        help="rebuild the demonstration encoder (CLIP-style pretraining on synthetic drawings)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the checkpoint into")
    parser.add_argument("--image-tower-from", type=Path, default=None, metavar="DIR",
                        help="reuse the image tower of an earlier build of the same recipe (its folder, "
                             "e.g. the shipped encoder's) and run only phase 3, the text tower: minutes "
                             "instead of about 30 on 2 cores, and the same weights")
    defaults = PretrainRecipe()
    for f in fields(PretrainRecipe):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(getattr(defaults, f.name)),
                            default=None, help=f"default {getattr(defaults, f.name)}")
    parser.set_defaults(func=run_pretrain_demo)
