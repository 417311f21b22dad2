"""``fgmd generate-demo-data``: write the procedural demo dataset."""

from __future__ import annotations

import argparse

from fgmd.cli.common import at_least

NAME = "generate-demo-data"
HELP = "write the procedural MS/PAN demo dataset (folder layout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--per-class", type=at_least(1), default=120, help="pairs per class (default 120)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from fgmd.data.synthetic import generate_demo_dataset

    path = generate_demo_dataset(args.out, n_per_class=args.per_class, seed=args.seed)
    print(f"wrote demo dataset to {path}")
    return 0
