"""``fgmd report``: figures and report.md of a run (PR / P@k curves, retrieval grids, training curves, PCA)."""

from __future__ import annotations

import argparse

from fgmd.cli.common import add_overrides, add_quiet

NAME = "report"
HELP = "write the visual report of a run (PNG figures + report.md) from its best.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder (best.pt, log.jsonl, ...)")
    parser.add_argument("--checkpoint", help="model to report on (default RUN_DIR/best.pt)")
    parser.add_argument("--out", help="output folder (default RUN_DIR/report)")
    parser.add_argument("--queries", type=int, default=4, help="queries per retrieval grid (default 4)")
    parser.add_argument("--top-k", type=int, default=10, help="results shown per query (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="picks the grid queries (default 0)")
    add_quiet(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.evaluation.report import generate_report

    path = generate_report(
        args.run_dir,
        args.checkpoint,
        args.out,
        args.overrides,
        num_queries=args.queries,
        top_k=args.top_k,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"wrote {path} and its figures in {path.parent}")
    return 0
