"""``fgmd diagnose``: what FDFSP, ADF and DAMD do in a trained model (figures + diagnostics.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fgmd.cli.common import add_overrides

NAME = "diagnose"
HELP = "module diagnostics of a checkpoint: ADF gates, FDFSP gains and spectra, DAMD attention, distance from identity"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="best.pt or last.pt of a run")
    parser.add_argument("--out", help="output folder (default: <checkpoint folder>/diagnostics)")
    parser.add_argument(
        "--images", type=_positive, default=16, help="query pairs probed, cycling over the classes (default 16)"
    )
    add_overrides(parser)
    parser.epilog = "How to read the figures and numbers: docs/MODULES.md."


def run(args: argparse.Namespace) -> int:
    from fgmd.evaluation.diagnostics import diagnose_checkpoint, write_diagnostics

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "diagnostics"
    result = diagnose_checkpoint(args.checkpoint, args.overrides, args.images)
    paths = write_diagnostics(result.diagnostics, out, result.images, result.masks)
    for modality, rows in result.diagnostics.identity.items():
        for row in rows:
            rms = "" if row["parameter_rms"] is None else f", parameter RMS {row['parameter_rms']:.3g}"
            print(f"{modality} {row['module']}: relative change {row['output_change']:.3g}{rms}")
    if not any(result.diagnostics.identity.values()) and result.diagnostics.damd_channel is None:
        print("this model has no FDFSP, ADF or DAMD: nothing to diagnose beyond the loss terms")
    print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} in {out}")
    return 0
