"""``fgmd report``: figures, report.md and report.html of a run; ``--compare`` overlays several runs."""

from __future__ import annotations

import argparse

from fgmd.cli.common import add_overrides, add_quiet, at_least

NAME = "report"
HELP = "write the visual report of a run (report.html, report.md, PNG figures, curve CSVs) from its best.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", help="run folder (best.pt, log.jsonl, ...)")
    parser.add_argument("--checkpoint", help="model to report on (default RUN_DIR/best.pt)")
    parser.add_argument("--out", help="output folder (default RUN_DIR/report; with --compare: compare/ here)")
    parser.add_argument("--queries", type=at_least(1), help="queries per retrieval grid (default: one per class)")
    parser.add_argument("--top-k", type=at_least(1), default=10, help="results shown per query (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="picks the grid queries (default 0)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="overlay these runs (and RUN_DIR if given): compare.html + compare.csv; runs without "
        "a report get one first",
    )
    add_quiet(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import ConfigError

    if args.compare:
        from fgmd.evaluation.report import compare_runs

        runs = ([args.run_dir] if args.run_dir else []) + args.compare
        if len(runs) < 2:
            raise ConfigError("give at least two runs to compare")
        path = compare_runs(runs, args.out or "compare", args.overrides, progress=not args.quiet)
        print(f"wrote {path} ({len(runs)} runs) and compare.csv beside it")
        return 0
    if not args.run_dir:
        raise ConfigError("give the run folder to report on (or --compare RUN RUN ...)")
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
    print(f"wrote {path.with_suffix('.html')} (self-contained), {path.name} and the figures and CSVs in {path.parent}")
    return 0
