"""``fgmd ablate``: the ablation table (baseline, +FDFSP, +ADF, +DAMD, full) under one budget."""

from __future__ import annotations

import argparse

from fgmd.cli.common import EPILOG, add_experiment_options, print_run, print_tables

NAME = "ablate"
HELP = "train + evaluate baseline, +FDFSP, +ADF, +DAMD and full FG-MD; write ablation.md / ablation.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG + " Finished variants (metrics.json present) are not retrained."
    parser.add_argument("--config", help="YAML config file (defaults apply to missing keys)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="NAME",
        help="variants to run, from baseline fdfsp adf damd full (default: all; table order is kept)",
    )
    parser.add_argument(
        "--timing-repeats", type=int, default=5, help="timed rounds per variant and batch size (default 5)"
    )
    add_experiment_options(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import load_config
    from fgmd.experiments.ablation import VARIANTS, run_ablation

    variants = args.variants
    config = load_config(args.config, args.overrides)

    result = run_ablation(
        config,
        variants,
        progress=not args.quiet,
        report=not args.no_report,
        timing_repeats=args.timing_repeats,
        on_run=lambda name, summary: print_run(VARIANTS[name][0], summary),
    )
    print_tables(result)
    return 0
