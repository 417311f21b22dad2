"""``fgmd prepare``: turn a downloaded dataset into the lists fgmd reads (VAIS)."""

from __future__ import annotations

import argparse

NAME = "prepare"
HELP = "write fgmd's lists for a downloaded dataset (vais: from annotations.txt)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=["vais"], help="which dataset")
    parser.add_argument("--root", required=True, help="the downloaded dataset folder (VAIS: holds annotations.txt)")
    parser.add_argument("--out", help="folder for the lists (default: --root); use it as data.root")
    parser.add_argument(
        "--database",
        choices=["train", "test"],
        default="train",
        help="official split that forms the retrieval database (default train; queries are the test split)",
    )


def run(args: argparse.Namespace) -> int:
    from fgmd.data.datasets.vais import prepare_vais
    from fgmd.data.issues import DataCheckError

    try:
        prepared = prepare_vais(args.root, args.out, database=args.database)
    except DataCheckError as error:
        print(f"fgmd prepare: error: {error}")
        return 1
    print(prepared.summary())
    for issue in prepared.issues.items:
        print(f"{issue.severity.upper()}: {issue}")
    print(f"\nnext: fgmd check-data --config configs/vais.yaml data.root={prepared.out}")
    return 0
