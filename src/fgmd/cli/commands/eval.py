"""``fgmd eval``: evaluate a checkpoint on its query/database splits."""

from __future__ import annotations

import argparse

from fgmd.cli.common import add_overrides, add_quiet

NAME = "eval"
HELP = "evaluate a checkpoint on its query/database splits (both directions)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    parser.add_argument("--out", help="metrics JSON path (default: metrics.json beside the checkpoint)")
    add_quiet(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.api import evaluate_checkpoint
    from fgmd.evaluation.evaluate import metrics_table

    metrics = evaluate_checkpoint(args.checkpoint, args.overrides, args.out, progress=not args.quiet)
    print(metrics_table(metrics))
    print(f"\nqueries from split {metrics['query_split']!r}, database split {metrics['database_split']!r}")
    return 0
