"""``fgmd search``: query an index with images of the other modality."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import cast

from fgmd.cli.common import add_overrides, at_least
from fgmd.runtime.files import write_atomic

NAME = "search"
HELP = "search an index (made by `fgmd index`) with query images of the other modality"
FORMATS = ("table", "json", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fgmd.retrieval.search import BACKENDS

    parser.add_argument("--index", required=True, help="index file made by `fgmd index`")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint whose other branch made the index")
    parser.add_argument("--modality", required=True, help="modality of the query images")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="query image files")
    parser.add_argument("--split", help="query with this split of the checkpoint's dataset instead, e.g. query")
    howmany = parser.add_mutually_exclusive_group()
    howmany.add_argument("-k", type=at_least(1), default=10, help="neighbours per query (default 10)")
    howmany.add_argument("--radius", type=at_least(0), help="every item within this Hamming distance instead of top-k")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("--out", help="write the results to this file instead of stdout")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="search backend; all are exact and give identical results (default auto)",
    )
    parser.add_argument(
        "--approximate",
        action="store_true",
        help="approximate search (faiss IndexBinaryIVF, needs faiss) for archives where exact search "
        "is too slow; its cluster count per query is calibrated to --recall",
    )
    parser.add_argument(
        "--recall",
        type=float,
        default=0.95,
        help="with --approximate: recall@100 the search is calibrated to reach (default 0.95)",
    )
    parser.add_argument(
        "--nprobe",
        type=int,
        help="with --approximate: clusters scanned per query instead of calibrating (the calibration is "
        "optimistic for cross-modal queries; see docs/DEPLOYMENT.md)",
    )
    parser.add_argument("--batch-size", type=at_least(1), default=64)
    parser.add_argument("--device", default="cpu", help="device for encoding the queries (default cpu)")
    add_overrides(parser)


COLUMNS = ["query", "rank", "id", "distance", "label", "path"]


def hits(result, index) -> list[dict]:
    """The hits of one query result: rank, id, distance, label (class names joined by ``;``;
    empty when the index has no labels), path (relative to the index's root; empty when the
    index does not know its files) and position in the index."""
    names = index.class_names
    out = []
    for rank, (hit_id, distance, position) in enumerate(zip(result.ids, result.distances, result.positions), start=1):
        label = ""
        if result.labels is not None:
            columns = [int(c) for c in result.labels[rank - 1].nonzero()[0]]
            label = ";".join(names[c] if names and c < len(names) else f"class_{c}" for c in columns)
        path = index.paths[int(position)] if index.paths is not None else ""
        out.append(
            {
                "rank": rank,
                "id": hit_id,
                "distance": int(distance),
                "label": label,
                "path": path,
                "position": int(position),
            }
        )
    return out


def render(results, fmt: str, meta: dict, index) -> str:
    per_query = [(r.query, hits(r, index)) for r in results]
    if fmt == "json":
        queries = [{"query": query, "results": found} for query, found in per_query]
        return json.dumps({**meta, "queries": queries}, indent=1, ensure_ascii=False) + "\n"
    table = [[query, *(h[c] for c in COLUMNS[1:])] for query, found in per_query for h in found]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(table)
        return buffer.getvalue()
    from fgmd.tables import render_table

    return render_table(COLUMNS, table) + "\n"


def run(args: argparse.Namespace) -> int:
    from fgmd.retrieval import Index
    from fgmd.retrieval.encode_archive import ArchiveError
    from fgmd.retrieval.image_search import search_images

    if not args.images and not args.split:
        raise ArchiveError("no queries: give query IMAGE files or --split")
    if args.images and args.split:
        raise ArchiveError("give query IMAGE files or --split, not both")
    index = Index.load(args.index)
    backend = "ivf" if args.approximate else args.backend
    nprobe = args.nprobe if args.approximate else None
    recall_target = args.recall if args.approximate and nprobe is None else None
    results = search_images(
        index,
        args.checkpoint,
        args.images or None,
        args.modality,
        split=args.split,
        k=args.k,
        radius=args.radius,
        backend=backend,
        recall_target=recall_target,
        nprobe=nprobe,
        batch_size=args.batch_size,
        device=args.device,
        overrides=args.overrides,
    )
    meta = {
        "index": str(args.index),
        "index_modality": index.modality,
        "index_root": index.root,
        "query_modality": args.modality,
        "items": len(index),
        **({"radius": args.radius} if args.radius is not None else {"k": args.k}),
    }
    if args.approximate and len(index):
        from fgmd.retrieval.backends import FaissIVF

        engine = cast(FaissIVF, index.backend(backend, recall_target=recall_target, nprobe=nprobe))
        meta["approximate"] = {
            "backend": "faiss IndexBinaryIVF",
            "nlist": engine.nlist,
            "nprobe": engine.nprobe,
            "recall_target": recall_target,
            "calibrated_recall_at_100": engine.calibrated_recall,
        }
        calibration = (
            "given"
            if engine.calibrated_recall is None
            else f"recall@100 {engine.calibrated_recall:.3f} on calibration queries (target {recall_target})"
        )
        print(f"approximate search: nprobe {engine.nprobe} of {engine.nlist} clusters, {calibration}", file=sys.stderr)
    text = render(results, args.format, meta, index)
    if args.out:
        write_atomic(args.out, text)
        print(f"{len(results)} queries, {sum(len(r.ids) for r in results)} results written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0
