"""``fgmd index``: encode a split or a folder of images into an index file (resumable, torchrun-able)."""

from __future__ import annotations

import argparse

from fgmd.cli.common import add_overrides, add_quiet, at_least

NAME = "index"
HELP = "encode a split or a folder of images of one modality into an index file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--info", metavar="FILE", help="describe an existing index file instead (needs nothing else)")
    parser.add_argument("--checkpoint", help="best.pt or last.pt of a run (required to build)")
    parser.add_argument("--modality", help="modality of the images (its branch encodes them; required to build)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", help="a split of the checkpoint's dataset, e.g. database")
    source.add_argument("--folder", help="a folder of image files (ids = relative paths without extension)")
    parser.add_argument("--recursive", action="store_true", help="with --folder: include subfolders")
    parser.add_argument("--out", help="index file to write, e.g. archive.fgidx (required to build)")
    parser.add_argument("--batch-size", type=at_least(1), default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=at_least(0), default=2, help="image decoding processes (default 2)")
    parser.add_argument(
        "--chunk-size",
        type=at_least(1),
        default=10_000,
        help="images per resumable chunk in <out>.parts/ (default 10000)",
    )
    parser.add_argument("--append", action="store_true", help="add the images whose ids are not yet in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave unreadable images out, listed in <out>.skipped.txt (default: stop with an error)",
    )
    parser.add_argument("--keep-parts", action="store_true", help="keep <out>.parts/ after merging")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    add_quiet(parser)
    add_overrides(parser)


def describe(path: str) -> str:
    """A few lines on an index file: items, bits, modality, labels, root and paths, the encoder."""
    from fgmd.retrieval import Index

    index = Index.load(path)
    encoder = index.encoder
    labels = "no labels" if index.labels is None else f"{index.num_labels} classes"
    if index.labels is not None and index.class_names:
        counts = index.labels.sum(axis=0)
        labels += " (" + ", ".join(f"{n} {int(c)}" for n, c in zip(index.class_names, counts)) + ")"
    files = f"root {index.root}" if index.paths is not None else "no image paths (written before index format 2)"
    example = (
        f"; first item {index.ids[0]!r}" + (f" at {index.paths[0]}" if index.paths is not None else "")
        if len(index)
        else ""
    )
    lines = [
        f"{path}: {len(index)} {index.modality} items, {index.bits}-bit codes, {labels}",
        f"  {files}{example}",
        f"  encoder: weights sha256 {str(encoder.get('weights_sha256', '?'))[:16]}…, "
        f"image size {encoder.get('config', {}).get('data', {}).get('image_size', '?')}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fgmd.config import ConfigError
    from fgmd.retrieval.encode_archive import build_index
    from fgmd.runtime.distributed import init_distributed

    if args.info:
        print(describe(args.info))
        return 0
    missing = [
        flag
        for flag, value in (("--checkpoint", args.checkpoint), ("--modality", args.modality), ("--out", args.out))
        if not value
    ]
    if not (args.split or args.folder):
        missing.append("--split or --folder")
    if missing:
        raise ConfigError(f"building an index needs {', '.join(missing)} (or --info FILE to describe one)")

    result = build_index(
        args.checkpoint,
        args.modality,
        args.out,
        split=args.split,
        folder=args.folder,
        recursive=args.recursive,
        batch_size=args.batch_size,
        num_workers=args.workers,
        chunk_size=args.chunk_size,
        append=args.append,
        overwrite=args.overwrite,
        skip_unreadable=args.skip_unreadable,
        keep_parts=args.keep_parts,
        device=args.device,
        progress=not args.quiet,
        overrides=args.overrides,
    )
    context, _ = init_distributed(args.device)
    if not context.is_main:
        return 0
    reused = f", {result.chunks_reused} chunk(s) found done" if result.chunks_reused else ""
    already = f", {result.already_indexed} already indexed" if args.append else ""
    print(f"wrote {result.path}: {result.count} {args.modality} images ({result.added} new{already}{reused})")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable image(s), listed in {result.skipped_file}")
    return 0
