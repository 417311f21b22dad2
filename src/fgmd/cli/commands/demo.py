"""``fgmd demo``: generate the demo data, train FG-MD on it, evaluate, print the results."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fgmd.cli.common import add_quiet

NAME = "demo"
HELP = "generate the demo data, train FG-MD on it, evaluate, print the results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="demo folder (data/ and run/ inside; default runs/demo)")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from fgmd.demo import run_demo
    from fgmd.evaluation.evaluate import metrics_table

    start = time.perf_counter()
    metrics = run_demo(Path(args.out), progress=not args.quiet)
    print(metrics_table(metrics))
    print(
        f"\nmean mAP {metrics['mean_map_tie']:.4f} tie-aware ({metrics['mean_map']:.4f} with ties by index) "
        "on the held-out query split "
        f"(run folder {Path(args.out) / 'run'}, {time.perf_counter() - start:.0f} s)"
    )
    print("\n" + serve_hint(Path(args.out)))
    return 0


def serve_hint(out: Path) -> str:
    """The commands that index the demo's database split and open the search page on it."""
    checkpoint = out / "run" / "best.pt"
    lines = ["next: look at the retrieval results in the browser (fgmd serve, needs fgmd[serve]):"]
    for modality in ("ms", "pan"):
        lines.append(
            f"  fgmd index --checkpoint {checkpoint} --modality {modality} --split database "
            f"--out {out / (modality + '.fgidx')} --overwrite"
        )
    lines.append(f"  fgmd serve --checkpoint {checkpoint} --index {out / 'ms.fgidx'} --index {out / 'pan.fgidx'}")
    return "\n".join(lines)
