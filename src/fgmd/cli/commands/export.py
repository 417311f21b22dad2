"""``fgmd export``: ONNX files of the encoders (one per branch), optionally checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from fgmd.cli.common import add_overrides, at_least

NAME = "export"
HELP = "export the encoders to ONNX (one file per branch + JSON sidecar); --check compares with PyTorch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fgmd.export.onnx import EXPORT_FORMATS
    from fgmd.export.precision import PRECISIONS

    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="export format (default onnx)")
    parser.add_argument("--out", required=True, help="folder for <modality>.onnx and <modality>.json")
    parser.add_argument(
        "--image-size", type=at_least(1), help="input side in pixels (default: the checkpoint's data.image_size)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--modality", action="append", help="export only this branch (repeatable; default all)")
    precision = parser.add_argument_group("numeric precision (input and output stay float32)")
    precision.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default); fp16 (for GPUs / TensorRT); int8 (static QDQ quantization, "
        "calibrated on the run's training images)",
    )
    precision.add_argument(
        "--calibration-images",
        type=int,
        default=128,
        help="int8: training images used to calibrate activation ranges (default 128)",
    )
    precision.add_argument("--per-channel", action="store_true", help="int8: one weight scale per output channel")
    precision.add_argument(
        "--keep-fp32",
        action="append",
        choices=("head", "fdfsp", "adf"),
        default=[],
        help="int8: leave this part of the encoder in float32 (repeatable)",
    )
    check = parser.add_argument_group("parity check (onnxruntime vs PyTorch on real images)")
    check.add_argument(
        "--check",
        action="store_true",
        help="after exporting, compare on the checkpoint's query/database splits (or --check-folder)",
    )
    check.add_argument("--check-folder", help="compare on this folder of images instead (implies --check)")
    check.add_argument("--check-modality", help="modality of the --check-folder images")
    check.add_argument("--recursive", action="store_true", help="with --check-folder: include subfolders")
    check.add_argument("--check-limit", type=at_least(1), help="use at most this many images per set")
    check.add_argument(
        "--budget",
        type=float,
        help="largest acceptable fraction of flipped bits; above it exit 1 (default by precision: "
        "fp32 0.001, fp16 0.01, int8 0.05)",
    )
    check.add_argument(
        "--max-map-drop",
        type=float,
        default=0.01,
        help="largest acceptable mAP loss vs the PyTorch model in any direction, on labelled splits "
        "(default 0.01 = one point); above it exit 1",
    )
    check.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import sys

    needed = ["onnx"] + (["onnxruntime"] if args.check or args.check_folder else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        print(f"fgmd export: error: needs {' and '.join(missing)}: pip install fgmd[onnx]", file=sys.stderr)
        return 2
    from fgmd.export.onnx import export_checkpoint
    from fgmd.export.precision import QuantizationOptions

    quantization = QuantizationOptions(
        calibration_images=args.calibration_images, per_channel=args.per_channel, keep_fp32=tuple(args.keep_fp32)
    )
    branches = export_checkpoint(
        args.checkpoint,
        args.out,
        image_size=args.image_size,
        opset=args.opset,
        modalities=args.modality,
        fmt=args.format,
        precision=args.precision,
        quantization=quantization,
        overrides=args.overrides,
    )
    for branch in branches:
        print(
            f"wrote {branch.onnx} and {branch.sidecar.name} ({branch.precision}, "
            f"{branch.image_size}x{branch.image_size}, dynamic batch)"
        )
    if not (args.check or args.check_folder):
        return 0
    from fgmd.export.parity import check_onnx, parity_table

    report = check_onnx(
        args.checkpoint,
        args.out,
        folder=args.check_folder,
        folder_modality=args.check_modality,
        recursive=args.recursive,
        limit=args.check_limit,
        budget=args.budget,
        max_map_drop=args.max_map_drop,
        threads=args.threads,
        out=Path(args.out) / "parity.json",
        overrides=args.overrides,
    )
    print()
    print(parity_table(report))
    print(f"\nimages: {report.data}")
    verdict = ("PARTIAL" if report.unchecked else "PASS") if report.passed else "FAIL"
    flips_ok = all(b.flip_rate <= report.budget for b in report.branches.values())
    map_ok = all(m["pytorch"] - m["onnx"] <= report.max_map_drop for m in report.map.values())
    print(
        f"{verdict}: bit flip rate {'within' if flips_ok else 'above'} the budget of {100 * report.budget:.3g}%"
        + (f", mAP {'within' if map_ok else 'more than'} {report.max_map_drop:g} of PyTorch's" if report.map else "")
        + f' (report in {Path(args.out) / "parity.json"}; figures also in each <modality>.json under "check")'
    )
    if report.unchecked:
        print(
            f"NOT CHECKED: {', '.join(report.unchecked)} (the folder holds {', '.join(report.branches)} images; "
            "--check without --check-folder compares every branch on the run's splits)"
        )
    return 0 if report.passed else 1
