"""``fgmd info``: parameters and MACs of FG-MD and of the plain baseline."""

from __future__ import annotations

import argparse

from fgmd.cli.common import add_overrides
from fgmd.cli.tables import render_table

NAME = "info"
HELP = "parameters and MACs of FG-MD and the plain baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: the built-in defaults)")
    parser.add_argument("--image-size", type=int, default=224, help="input size for the MAC count (default 224)")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import load_config
    from fgmd.models import model_from_config, model_summary

    config = load_config(args.config, args.overrides)
    baseline = config.with_overrides(["model.fdfsp=false", "model.adf=false"])
    rows = []
    for name, variant in {"FG-MD (config)": config, "baseline (no FDFSP/ADF)": baseline}.items():
        summary = model_summary(model_from_config(variant), image_size=args.image_size)
        for modality, branch in summary["branches"].items():
            rows.append([name, modality, f"{branch['params'] / 1e6:.3f}M", f"{branch['macs'] / 1e6:.1f}M"])
        macs = sum(branch["macs"] for branch in summary["branches"].values())
        rows.append([name, "total", f"{summary['total_params'] / 1e6:.3f}M", f"{macs / 1e6:.1f}M"])
    print(render_table(["model", "branch", "parameters", f"MACs @ {args.image_size}x{args.image_size}"], rows))
    print("\nDAMD attention modules and the class projection exist only while training and are not counted.")
    return 0
