"""``fgmd serve``: the search page and JSON API (FastAPI + uvicorn) over one or more indexes."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from fgmd.cli.common import add_overrides

NAME = "serve"
HELP = "serve a search page and JSON API over indexes made by `fgmd index` (needs fgmd[serve])"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of the run that made the indexes")
    parser.add_argument(
        "--index",
        required=True,
        action="append",
        metavar="FILE",
        help="index file (repeat for the other modality: --index ms.fgidx --index pan.fgidx)",
    )
    parser.add_argument("--run", metavar="RUN_DIR", help="the run folder: a relative data.root is looked up from it")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--device", default="cpu", help="device for encoding queries (default cpu)")
    parser.add_argument("--max-upload-mb", type=float, default=32.0, help="largest accepted upload (default 32 MiB)")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from fgmd.serve.app import create_app
    except ImportError as error:
        print(f"fgmd serve: error: {error.name} is not installed: pip install 'fgmd[serve]'", file=sys.stderr)
        return 2
    from fgmd.serve.service import QueryError, SearchService

    try:
        service = SearchService(
            args.checkpoint, args.index, run_dir=args.run, device=args.device, overrides=args.overrides
        )
    except QueryError as error:
        print(f"fgmd serve: error: {error}", file=sys.stderr)
        return 2
    app = create_app(service, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine can query the index "
            "and see its images (there is no authentication)",
            file=sys.stderr,
        )
    counts = ", ".join(f"{m} index: {len(index)} items" for m, index in service.indexes.items())
    print(f"fgmd serve: {counts}; open http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
