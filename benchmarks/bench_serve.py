"""Latency of `fgmd serve` for uploaded query images: p50/p95 per request, end to end over HTTP.

Starts ``fgmd serve`` in a subprocess (the real uvicorn server, as a user runs it), waits for
``/api/health``, then uploads query images one request at a time (``POST /api/search``,
multipart, like the page does) for ``--duration`` seconds after ``--warmup`` requests, and
reports the client-side request time and the server's decode / encode / search split
(``timing_ms`` in each answer). The query images are files of the run's query split
(``--modality`` images), cycled in order; each upload's bytes are read once before timing.

Example (the demo run)::

    python benchmarks/bench_serve.py --checkpoint runs/demo/run/best.pt \\
        --index runs/demo/pan.fgidx --modality ms --duration 20 --out serve.json
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT, markdown_table, run_meta, write_json  # noqa: E402 (also puts src/ on sys.path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def query_files(checkpoint: str, modality: str, count: int) -> list[Path]:
    import fgmd
    from fgmd.data.datasets import build_dataset

    _, config = fgmd.load_model(checkpoint)
    records = build_dataset(config.data, config.data.query_split).images(modality).records
    return [Path(r.paths[modality]) for r in records[:count]]


def percentiles(values: list[float]) -> dict:
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "mean": round(float(array.mean()), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--index", action="append", required=True, help="index file(s), as for fgmd serve")
    parser.add_argument("--modality", default="ms", help="modality of the uploaded queries (default ms)")
    parser.add_argument("--k", type=int, default=20, help="results per request (default 20)")
    parser.add_argument("--images", type=int, default=50, help="distinct query images, cycled (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first (default 5)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of timed requests (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the server (default: inherit)")
    parser.add_argument("--out", type=Path, help="write results as JSON here")
    args = parser.parse_args()

    import httpx

    files = query_files(args.checkpoint, args.modality, args.images)
    uploads = [(f.name, f.read_bytes()) for f in files]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    command = [sys.executable, "-m", "fgmd", "serve", "--checkpoint", args.checkpoint, "--port", str(port)]
    for index in args.index:
        command += ["--index", index]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"fgmd serve exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if client.get("/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("fgmd serve did not start within 120 s")
                time.sleep(0.2)

            def ask(i: int) -> tuple[float, dict]:
                name, data = uploads[i % len(uploads)]
                start = time.perf_counter()
                answer = client.post(
                    "/api/search", data={"modality": args.modality, "k": str(args.k)}, files={"image": (name, data)}
                )
                elapsed = (time.perf_counter() - start) * 1000
                if answer.status_code != 200:
                    raise SystemExit(f"request failed: {answer.status_code} {answer.text[:500]}")
                return elapsed, answer.json()["timing_ms"]

            for i in range(args.warmup):
                ask(i)
            totals, parts = [], {"decode": [], "encode": [], "search": []}
            stop = time.monotonic() + args.duration
            i = 0
            while time.monotonic() < stop:
                elapsed, timing = ask(i)
                totals.append(elapsed)
                for key in parts:
                    parts[key].append(timing[key])
                i += 1
    finally:
        server.terminate()
        server.wait(timeout=30)

    results = [{"what": "request (client, end to end)", **percentiles(totals)}]
    results += [{"what": f"server {key}", **percentiles(values)} for key, values in parts.items()]
    table = markdown_table(
        ["ms per uploaded query", "p50", "p95", "mean"], [[r["what"], r["p50"], r["p95"], r["mean"]] for r in results]
    )
    print(table)
    print(f"{len(totals)} timed requests, k={args.k}, {args.modality} uploads of {len(uploads)} distinct images")
    meta = run_meta(
        requests=len(totals),
        k=args.k,
        modality=args.modality,
        index=args.index,
        checkpoint=args.checkpoint,
        server_omp_threads=env.get("OMP_NUM_THREADS"),
    )
    write_json(args.out, meta, results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
