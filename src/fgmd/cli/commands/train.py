"""``fgmd train``: train FG-MD from a config."""

from __future__ import annotations

import argparse
import os

from fgmd.cli.common import add_overrides, add_quiet

NAME = "train"
HELP = "train FG-MD from a config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (defaults apply to missing keys)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the run in out_dir from its last.pt")
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run files already in out_dir (checkpoints, log, config, metrics) and start again",
    )
    add_quiet(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import load_config
    from fgmd.training.trainer import fit

    config = load_config(args.config, args.overrides)
    result = fit(config, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    mean = result.best_metrics.get("mean", {})
    selected = (
        f"selected on validation {config.eval.select_on}; validation mean mAP {mean['map_tie']:.4f} tie-aware, "
        f"{mean['map']:.4f} ties by index"
        if result.best_metrics
        else "no validation split: last epoch kept"
    )
    print(f"trained {config.train.epochs} epochs into {result.run_dir}; best epoch {result.best_epoch} ({selected})")
    print(
        f"next: fgmd eval --checkpoint {result.run_dir / 'best.pt'}   (test-split metrics)\n"
        f"      fgmd report {result.run_dir}   (figures and report.html)"
    )
    return 0
