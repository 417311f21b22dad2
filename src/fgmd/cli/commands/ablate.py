"""``fgmd ablate``: the ablation table (baseline, +FDFSP, +ADF, +DAMD, full) under one budget,
for one seed or several (``--seeds``: per-seed results and mean ± sd)."""

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
        help="variants to run, from baseline fdfsp adf damd full (default: all; table order is kept); "
        "a design variant adds settings with +key=value, e.g. full+train.module_lr_mult=10 "
        "(trained into out_dir/<NAME>)",
    )
    parser.add_argument(
        "--timing-repeats", type=int, default=5, help="timed rounds per variant and batch size (default 5)"
    )
    several = parser.add_mutually_exclusive_group()
    several.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        help="one ablation per seed into out_dir/seed_<s>, then ablation_seeds.md/.csv/.png in out_dir "
        "(per-seed test mAP, mean ± sd, paired gain over the baseline)",
    )
    several.add_argument(
        "--combine",
        nargs="+",
        metavar="DIR",
        help="train nothing: summarise finished ablation folders of different seeds into out_dir "
        "(default: the parent of the first DIR)",
    )
    add_experiment_options(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fgmd.config import load_config
    from fgmd.experiments.ablation import parse_variant, run_ablation
    from fgmd.experiments.seeds import run_seeds, summarise_seeds

    if args.combine:
        explicit = any(o.startswith("out_dir=") for o in args.overrides)
        out = load_config(args.config, args.overrides).out_dir if explicit else Path(args.combine[0]).parent
        summary = summarise_seeds(args.combine, out)
    elif args.seeds:
        summary = run_seeds(
            load_config(args.config, args.overrides),
            args.seeds,
            args.variants,
            progress=not args.quiet,
            report=not args.no_report,
            timing_repeats=args.timing_repeats,
            on_seed=lambda seed, folder: print(f"seed {seed}: {folder / 'ablation.md'}", flush=True),
        )
    else:
        result = run_ablation(
            load_config(args.config, args.overrides),
            args.variants,
            progress=not args.quiet,
            report=not args.no_report,
            timing_repeats=args.timing_repeats,
            on_run=lambda name, summary: print_run(parse_variant(name).label, summary),
        )
        print_tables(result)
        return 0
    print()
    print(summary.markdown.read_text())
    figure = f", {summary.figure}" if summary.figure else ""
    print(f"wrote {summary.markdown}, {summary.csv}{figure}")
    return 0
