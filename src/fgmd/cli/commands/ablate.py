"""``fgmd ablate``: the ablation table (baseline, +FDFSP, +ADF, +DAMD, full) under one budget."""

from __future__ import annotations

import argparse

from fgmd.cli.common import EPILOG, add_overrides, add_quiet, split_trailing_overrides

NAME = "ablate"
HELP = "train + evaluate baseline, +FDFSP, +ADF, +DAMD and full FG-MD; write ablation.md / ablation.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG + " Finished variants (metrics.json present) are not retrained."
    parser.add_argument("--config", help="YAML config file (defaults apply to missing keys)")
    parser.add_argument(
        "--variants", nargs="+", default=None, metavar="NAME",
        help="variants to run, from baseline fdfsp adf damd full (default: all; table order is kept)",
    )
    parser.add_argument("--timing-repeats", type=int, default=5, help="timed rounds per variant and batch size (default 5)")
    parser.add_argument("--no-report", action="store_true", help="skip the visual report of each run")
    add_quiet(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import load_config
    from fgmd.experiments.ablation import VARIANTS, run_ablation

    variants, overrides = split_trailing_overrides(args.variants, args.overrides)
    config = load_config(args.config, overrides)

    def done(name, summary) -> None:
        label = VARIANTS[name][0]
        print(f"{label}: mean mAP {summary.selected['mean']['map_tie']:.4f} tie-aware, {summary.selected['mean']['map']:.4f} ties by index (selected on validation) in {summary.run_dir}", flush=True)

    result = run_ablation(
        config, variants, progress=not args.quiet, report=not args.no_report,
        timing_repeats=args.timing_repeats, on_run=done,
    )
    print()
    print(result.markdown.read_text())
    print(f"wrote {result.markdown} and {result.csv}")
    return 0
