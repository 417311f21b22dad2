"""``fgmd`` command line: a thin layer over the Python API (:mod:`fgmd.api`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fgmd.cli.tables import metrics_table, render_table

EPILOG = "Overrides are dotted config keys with YAML values, e.g. model.bits=64 train.epochs=20."


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.bits=64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgmd", description="FG-MD cross-modal hashing retrieval.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="generate the demo data, train FG-MD on it, evaluate, print the results")
    demo.add_argument("--out", default="runs/demo", help="demo folder (data/ and run/ inside; default runs/demo)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    train = sub.add_parser("train", help="train FG-MD from a config", epilog=EPILOG)
    train.add_argument("--config", help="YAML config file (defaults apply to missing keys)")
    train.add_argument("--resume", action="store_true", help="continue the run in out_dir from its last.pt")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_overrides(train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint on its query/database splits", epilog=EPILOG)
    evaluate.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    evaluate.add_argument("--out", help="metrics JSON path (default: metrics.json beside the checkpoint)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_overrides(evaluate)

    info = sub.add_parser("info", help="parameters and MACs of FG-MD and the plain baseline", epilog=EPILOG)
    info.add_argument("--config", help="YAML config file (default: the built-in defaults)")
    info.add_argument("--image-size", type=int, default=224, help="input size for the MAC count (default 224)")
    _add_overrides(info)

    gen = sub.add_parser("generate-demo-data", help="write the procedural demo dataset")
    gen.add_argument("--out", required=True, help="folder to create")
    gen.add_argument("--per-class", type=int, default=120, help="pairs per class (default 120)")
    gen.add_argument("--seed", type=int, default=0)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from fgmd.demo import run_demo

    start = time.perf_counter()
    metrics = run_demo(Path(args.out), progress=not args.quiet)
    print(metrics_table(metrics))
    print(f"\nmean mAP {metrics['mean_map']:.4f} on the held-out query split; run folder {Path(args.out) / 'run'}; "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from fgmd.config import load_config
    from fgmd.training.trainer import fit

    config = load_config(args.config, args.overrides)
    result = fit(config, resume=args.resume, progress=not args.quiet)
    print(f"trained {config.train.epochs} epochs into {result.run_dir}; best epoch {result.best_epoch + 1}"
          + (f" (validation mean mAP {result.best_metrics['mean_map']:.4f})" if result.best_metrics else " (no validation split: last epoch kept)"))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fgmd.api import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.overrides, args.out, progress=not args.quiet)
    print(metrics_table(metrics))
    print(f"\nqueries from split {metrics['query_split']!r}, database split {metrics['database_split']!r}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from fgmd.api import model_from_config
    from fgmd.config import load_config
    from fgmd.models import model_summary

    config = load_config(args.config, args.overrides)
    rows = []
    variants = {"FG-MD (config)": config, "baseline (no FDFSP/ADF)": config.with_overrides(["model.fdfsp=false", "model.adf=false"])}
    for name, variant in variants.items():
        summary = model_summary(model_from_config(variant), image_size=args.image_size)
        for modality, branch in summary["branches"].items():
            rows.append([name, modality, f"{branch['params'] / 1e6:.3f}M", f"{branch['macs'] / 1e6:.1f}M"])
        rows.append([name, "total", f"{summary['params'] / 1e6:.3f}M", f"{summary['macs'] / 1e6:.1f}M"])
    print(render_table(["model", "branch", "parameters", f"MACs @ {args.image_size}x{args.image_size}"], rows))
    print("\nDAMD attention modules and the class projection exist only while training and are not counted.")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from fgmd.data.synthetic import generate_demo_dataset

    path = generate_demo_dataset(args.out, n_per_class=args.per_class, seed=args.seed)
    print(f"wrote demo dataset to {path}")
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "eval": cmd_eval, "info": cmd_info, "generate-demo-data": cmd_generate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fgmd.errors import USER_ERRORS

    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        print(f"fgmd {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
