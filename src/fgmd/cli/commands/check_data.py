"""``fgmd check-data``: what a dataset holds and every problem in it, before a long run."""

from __future__ import annotations

import argparse
import json

from fgmd.cli.common import add_overrides, add_quiet
from fgmd.tables import render_table

NAME = "check-data"
HELP = "check a dataset (layout, lists, labels, images, leakage) and summarise it"

EXIT_ERRORS = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (its data section is checked)")
    parser.add_argument("--format", help="shortcut for data.format=...")
    parser.add_argument("--root", help="shortcut for data.root=...")
    parser.add_argument("--modalities", nargs=2, metavar=("A", "B"), help="shortcut for data.modalities=[A,B]")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding the images (only check they exist)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    add_quiet(parser)
    add_overrides(parser)
    parser.epilog = "Exit status: 0 when there is no error (warnings allowed), 1 when there is an error."


def run(args: argparse.Namespace) -> int:
    from fgmd.config import load_config
    from fgmd.data.validation import check_data

    overrides = list(args.overrides)
    if args.format:
        overrides.append(f"data.format={args.format}")
    if args.root:
        overrides.append(f"data.root={json.dumps(args.root)}")
    if args.modalities:
        overrides.append(f"data.modalities=[{', '.join(args.modalities)}]")
    config = load_config(args.config, overrides)
    report = check_data(config, decode=not args.no_decode, progress=not args.quiet)
    print(render_report(report))
    if args.json:
        from fgmd.runtime.files import write_atomic

        write_atomic(args.json, json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else EXIT_ERRORS


def render_report(report) -> str:
    """The plain-text rendering of a :class:`~fgmd.data.validation.DataReport`."""
    lines = [f"dataset: format {report.format}, root {report.root}, modalities {', '.join(report.modalities)}"]
    roles = ", ".join(f"{role} = {split!r}" for role, split in report.roles.items())
    lines.append(f"splits: {roles}")
    mods = report.modalities
    if report.splits:
        rows = [
            [s.name, "+".join(s.roles), s.records, s.pairs, *(s.images.get(m, 0) for m in mods)]
            for s in report.splits.values()
        ]
        lines += ["", render_table(["split", "role", "records", "pairs", *(f"{m} images" for m in mods)], rows)]
    if report.class_names:
        splits = list(report.splits.values())
        rows = [
            [i, name, *(s.class_counts[i] if i < len(s.class_counts) else 0 for s in splits)]
            for i, name in enumerate(report.class_names)
        ]
        lines += [
            "",
            f"classes ({len(report.class_names)}), records per split:",
            render_table(["label", "class", *(s.name for s in splits)], rows),
        ]
    if report.decoded:
        lines.append("")
        for m, stat in report.images.items():
            size = ""
            if stat.min_size:
                lo, hi = (f"{h}x{w}" for h, w in (stat.min_size, stat.max_size))
                size = f", size {lo}" if lo == hi else f", sizes {lo} .. {hi}"
            bands = "/".join(map(str, stat.bands_on_disk)) or "?"
            lines.append(f"images {m}: {stat.readable} of {stat.files} decoded, {bands} band(s) on disk{size}")
    elif report.splits:
        lines += ["", "images: not decoded (--no-decode); listed files exist"]
    for m, stats in report.scaling.items():
        how = "computed" if stats["computed"] else "configured"
        lines.append(f"scaling {m} ({how}): scale_low {stats['low']}, scale_high {stats['high']}")
    lines.append("")
    errors, warnings, notes = report.errors, report.warnings, report.notes
    for label, items in (("ERROR", errors), ("WARNING", warnings), ("NOTE", notes)):
        for issue in items:
            text = str(issue).replace("\n", "\n    ")
            lines.append(f"{label}: {text}")
    verdict = "OK" if not errors else "FAILED"
    lines.append(f"{verdict}: {len(errors)} error(s), {len(warnings)} warning(s)")
    return "\n".join(lines)
