"""``fgmd index``: encode a split or a folder of images into an index file (resumable, torchrun-able)."""

from __future__ import annotations

import argparse

from fgmd.cli.common import add_overrides, add_quiet

NAME = "index"
HELP = "encode a split or a folder of images of one modality into an index file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    parser.add_argument("--modality", required=True, help="modality of the images (its branch encodes them)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--split", help="a split of the checkpoint's dataset, e.g. database")
    source.add_argument("--folder", help="a folder of image files (ids = relative paths without extension)")
    parser.add_argument("--recursive", action="store_true", help="with --folder: include subfolders")
    parser.add_argument("--out", required=True, help="index file to write, e.g. archive.fgidx")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="image decoding processes (default 2)")
    parser.add_argument(
        "--chunk-size", type=int, default=10_000, help="images per resumable chunk in <out>.parts/ (default 10000)"
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


def run(args: argparse.Namespace) -> int:
    from fgmd.retrieval.encode_archive import build_index
    from fgmd.runtime.distributed import init_distributed

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
