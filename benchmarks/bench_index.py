"""Index memory: bytes per indexed image and peak RSS of ``fgmd index`` on a generated folder.

For each archive size N and code length K: a folder of N PAN images (hard links to a few
hundred generated demo images, ``d<nnnn>/img_<nnnnnnn>.png``, 1000 per subfolder, so ids are
17 characters) is indexed with ``fgmd index --folder ... --recursive`` by a checkpoint of an
untrained FG-MD (the weights do not change sizes or memory), each run in a fresh process.
Reported:

* bytes per image = index file size / N, next to its parts: K/8 code bytes, id bytes + 1
  newline, and the fixed header/metadata (config and encoder identity, ~3 KB);
* peak RSS of the indexing process (``ru_maxrss``) and of its largest DataLoader worker, and
  the RSS of a process that only loads the checkpoint and builds the encoder (the baseline
  that does not depend on N);
* wall time and images/s.

Indexing encodes in chunks (``--chunk-size``) and keeps only packed codes and ids between
chunks, so peak RSS should not grow with N beyond ~(K/8 + id length) bytes per image.

Example::

    python benchmarks/bench_index.py --sizes 2000,8000 --bits 32,64 --image-size 64 --out index.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, markdown_table, run_meta, write_json

RUNNER = r"""
import json, resource, sys, time
sys.argv = ["fgmd"] + sys.argv[1:]
mode = sys.argv.pop(1)
start = time.perf_counter()
if mode == "index":
    from fgmd.cli.main import main
    code = main(sys.argv[1:])
else:  # baseline: load the checkpoint and build the encoder only
    from fgmd.retrieval.encode_archive import load_encoder
    load_encoder(sys.argv[1], "pan")
    code = 0
print(json.dumps({
    "code": code,
    "seconds": time.perf_counter() - start,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "peak_rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


def make_checkpoint(path: Path, bits: int, image_size: int, width: float) -> Path:
    from fgmd.config import load_config
    from fgmd.models import model_from_config
    from fgmd.runtime.checkpoint import save_checkpoint

    config = load_config(
        None,
        [
            "data.modality={ms: {channels: 3}, pan: {channels: 1}}",
            f"data.image_size={image_size}",
            f"data.resize={round(image_size * 256 / 224)}",
            f"model.bits={bits}",
            f"model.width_mult={width}",
        ],
    )
    model = model_from_config(config)
    save_checkpoint(
        path,
        {
            "config": config.to_dict(),
            "class_names": [],
            "epoch": 0,
            "model": model.state_dict(),
            "selected_on": "last",
            "metrics": {},
        },
    )
    return path


def make_folder(root: Path, count: int, sources: list[Path]) -> Path:
    for i in range(count):
        target = root / f"d{i // 1000:04d}" / f"img_{i:07d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], target)
    return root


def run(args: list[str], threads: int | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,8000", help="comma-separated archive sizes N")
    parser.add_argument("--bits", default="32,64", help="comma-separated code lengths K")
    parser.add_argument("--image-size", type=int, default=64, help="encoder input size (default 64: fast)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the indexing process (default: inherited)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    meta = run_meta(
        image_size=args.image_size,
        width=args.width,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
    )
    print(meta, flush=True)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        from fgmd.data.synthetic import generate_demo_dataset

        demo = generate_demo_dataset(workdir / "demo", n_per_class=50, seed=0)
        sources = sorted((demo / "images" / "pan").glob("*.png"))
        for bits in (int(b) for b in args.bits.split(",")):
            checkpoint = make_checkpoint(workdir / f"k{bits}.pt", bits, args.image_size, args.width)
            baseline = run(["baseline", str(checkpoint)], args.threads)
            for count in sizes:
                folder = (
                    make_folder(workdir / f"imgs_{count}", count, sources)
                    if not (workdir / f"imgs_{count}").exists()
                    else workdir / f"imgs_{count}"
                )
                out = workdir / f"k{bits}_{count}.fgidx"
                start = time.perf_counter()
                measured = run(
                    [
                        "index",
                        "index",
                        "--checkpoint",
                        str(checkpoint),
                        "--modality",
                        "pan",
                        "--folder",
                        str(folder),
                        "--recursive",
                        "--out",
                        str(out),
                        "--chunk-size",
                        str(args.chunk_size),
                        "--batch-size",
                        str(args.batch_size),
                        "--workers",
                        str(args.workers),
                        "--quiet",
                        "--device",
                        "cpu",
                    ],
                    args.threads,
                )
                wall = time.perf_counter() - start
                from fgmd.retrieval import Index

                index = Index.load(out)
                id_bytes = int(index.ids.blob.nbytes) / count
                size = out.stat().st_size
                record = {
                    "n_images": count,
                    "bits": bits,
                    "file_bytes": size,
                    "bytes_per_image": size / count,
                    "code_bytes_per_image": bits / 8,
                    "id_bytes_per_image": id_bytes,
                    "fixed_bytes": size - count * (bits / 8) - int(index.ids.blob.nbytes),
                    "peak_rss_mib": measured["peak_rss_mib"],
                    "peak_rss_workers_mib": measured["peak_rss_children_mib"],
                    "baseline_rss_mib": baseline["peak_rss_mib"],
                    "seconds": measured["seconds"],
                    "wall_seconds": wall,
                    "images_per_s": count / measured["seconds"],
                }
                results.append(record)
                print(
                    f"N={count} K={bits}: {record['bytes_per_image']:.2f} B/image, peak RSS "
                    f"{record['peak_rss_mib']:.0f} MiB (baseline {record['baseline_rss_mib']:.0f}), "
                    f"{record['images_per_s']:.0f} img/s",
                    flush=True,
                )
                out.unlink()
    table = markdown_table(
        [
            "N",
            "K",
            "file (bytes)",
            "bytes/image",
            "= code + id+newline (+ fixed/N)",
            "peak RSS (MiB)",
            "largest worker (MiB)",
            "load-model-only RSS (MiB)",
            "images/s",
        ],
        [
            [
                f"{r['n_images']:,}",
                r["bits"],
                f"{r['file_bytes']:,}",
                f"{r['bytes_per_image']:.2f}",
                f"{r['code_bytes_per_image']:.0f} + {r['id_bytes_per_image']:.0f} (+ {r['fixed_bytes'] / r['n_images']:.2f})",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['peak_rss_workers_mib']:.0f}",
                f"{r['baseline_rss_mib']:.0f}",
                f"{r['images_per_s']:.0f}",
            ]
            for r in results
        ],
    )
    print()
    print(table)
    write_json(args.out, meta, results, table)


if __name__ == "__main__":
    main()
