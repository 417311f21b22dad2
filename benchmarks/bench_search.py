"""Benchmark exact Hamming top-k search: fgmd backends vs faiss IndexBinaryFlat vs numpy.

For every (N, K, data set): generate database and query codes, build an ``fgmd.retrieval.Index``
(ids + labels), save it and time ``Index.load``, then measure on the same queries

* throughput: one batched ``search`` of all queries, queries/s (median over rounds, the
  methods interleaved round by round so load changes on a shared machine hit all alike);
* latency: batches of one query, median and p95 ms (methods interleaved per query);

and verify exactness against the numpy scan: fgmd backends must match it exactly
(indices and distances, ties by position); raw faiss must match it up to the order of
ties (same distances; returned ids carry the distances faiss reports).

Data sets: ``uniform`` (random codes: no structure, MIH's worst case) and ``clustered:C``
(C class centres, each code = its centre with every bit flipped with a per-item
probability drawn from [0.05, 0.15], like codes of a trained hashing model; queries come
from the same centres).

Example::

    python benchmarks/bench_search.py --sizes 1000000,10000000 --bits 32,64 \\
        --data clustered:6,clustered:50,uniform --out results.json

A quick smoke run: ``--sizes 20000 --queries 50 --latency-queries 10 --rounds 1``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import run_meta, write_json  # noqa: E402 (also puts src/ on sys.path)

from fgmd.retrieval import Index, resolve_backend  # noqa: E402
from fgmd.retrieval.backends import faiss_available  # noqa: E402
from fgmd.codes import popcount_rows, word_view  # noqa: E402

_CHUNK = 1_000_000


def make_codes(kind: str, n_items: int, n_queries: int, bits: int, seed: int):
    """``(db [N, K/8], queries [Q, K/8], labels [N, C] or None)`` for a data set name."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        db = rng.integers(0, 256, (n_items, bits // 8), dtype=np.uint8)
        queries = rng.integers(0, 256, (n_queries, bits // 8), dtype=np.uint8)
        return db, queries, None
    name, _, count = kind.partition(":")
    if name != "clustered" or not count.isdigit():
        raise SystemExit(f"unknown data set {kind!r}: use uniform or clustered:<centres>")
    centres = rng.integers(0, 2, (int(count), bits)).astype(bool)

    def sample(n):
        out = np.empty((n, bits // 8), dtype=np.uint8)
        classes = rng.integers(0, len(centres), n)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            flip_p = rng.uniform(0.05, 0.15, (stop - start, 1)).astype(np.float32)
            flips = rng.random((stop - start, bits), dtype=np.float32) < flip_p
            out[start:stop] = np.packbits(centres[classes[start:stop]] ^ flips, axis=1)
        return out, classes

    db, classes = sample(n_items)
    queries, _ = sample(n_queries)
    labels = np.zeros((n_items, len(centres)), dtype=np.uint8)
    labels[np.arange(n_items), classes] = 1
    return db, queries, labels


def check_exact(result, reference) -> bool:
    return np.array_equal(result[0], reference[0]) and np.array_equal(result[1], reference[1])


def check_up_to_ties(distances, indices, reference, db_words, query_words) -> bool:
    """faiss raw: same distance rows, and every returned id really has its distance."""
    if not np.array_equal(np.asarray(distances, dtype=np.int32), reference[0]):
        return False
    true = popcount_rows(db_words[indices] ^ query_words[:, None, :])
    return bool(np.array_equal(true, distances)) and all(len(set(row)) == len(row) for row in indices)


def run_config(args, n_items: int, bits: int, kind: str, workdir: Path) -> list[dict]:
    import faiss  # the comparison needs it even though fgmd does not

    db, queries, labels = make_codes(kind, n_items, args.queries, bits, args.seed)
    ids = [f"img_{i:08d}" for i in range(n_items)]
    encoder = {"config": {"bits": bits}, "weights_sha256": "0" * 64, "modality": "pan", "bits": bits}
    index = Index(bits, "pan", encoder, db, ids, labels)
    del ids
    path = index.save(workdir / f"bench_{n_items}_{bits}.fgmdidx")
    file_bytes = path.stat().st_size
    load_seconds = []
    for _ in range(3):
        start = time.perf_counter()
        index = Index.load(path)
        load_seconds.append(time.perf_counter() - start)
    path.unlink()

    flat = faiss.IndexBinaryFlat(bits)
    flat.add(db)
    auto_name = resolve_backend("auto", n_items, bits)
    methods: dict[str, dict] = {}

    def fgmd_method(label, backend, substrings=None):
        start = time.perf_counter()
        engine = index.backend(backend, mih_substrings=substrings)
        build = time.perf_counter() - start
        extra = {"substrings": engine.substrings, "mih_bytes_per_item": engine.nbytes / n_items} if engine.name == "mih" else {}
        methods[label] = {
            "batch": lambda q: index.search(q, args.k, backend, mih_substrings=substrings),
            "build_s": build,
            "exact": "exact",
            **extra,
        }

    fgmd_method(f"fgmd auto (-> {auto_name})", "auto")
    for substrings in args.mih_substrings:
        m = None if substrings == "default" else int(substrings)
        if auto_name != "mih" or m is not None:
            fgmd_method(f"fgmd mih (m={m or 'default'})", "mih", m)
    if auto_name != "faiss":
        fgmd_method("fgmd faiss (flat, exact ties)", "faiss")
    methods["faiss IndexBinaryFlat (raw)"] = {"batch": lambda q: flat.search(q, args.k), "build_s": 0.0, "exact": "ties"}
    fgmd_method("numpy brute force", "numpy")

    reference = index.search(queries, args.k, "numpy")
    db_words, query_words = word_view(db), word_view(queries)
    timings = {label: [] for label in methods}
    outputs = {}
    for _ in range(args.rounds):
        for label, method in methods.items():
            start = time.perf_counter()
            outputs[label] = method["batch"](queries)
            timings[label].append(time.perf_counter() - start)
    latencies = {label: [] for label in methods}
    for row in range(min(args.latency_queries, len(queries))):
        one = queries[row : row + 1]
        for label, method in methods.items():
            start = time.perf_counter()
            method["batch"](one)
            latencies[label].append(time.perf_counter() - start)

    records = []
    for label, method in methods.items():
        distances, indices = outputs[label]
        if method["exact"] == "exact":
            ok = check_exact((distances, indices), reference)
        else:
            ok = check_up_to_ties(distances, indices, reference, db_words, query_words)
        lat = np.array(latencies[label]) * 1e3
        records.append(
            {
                "n_items": n_items,
                "bits": bits,
                "data": kind,
                "method": label,
                "queries_per_s": len(queries) / float(np.median(timings[label])),
                "latency_ms_median": float(np.median(lat)),
                "latency_ms_p95": float(np.percentile(lat, 95)),
                "build_s": method["build_s"],
                "verified": ok,
                "verification": "identical to numpy scan" if method["exact"] == "exact" else "identical up to tie order",
                "kth_distance_median": float(np.median(reference.distances[:, -1])),
                "file_bytes_per_item": file_bytes / n_items,
                "code_bytes_per_item": bits / 8,
                "load_s": float(np.median(load_seconds)),
                **{key: method[key] for key in ("substrings", "mih_bytes_per_item") if key in method},
            }
        )
        print(
            f"  {label:34s} {records[-1]['queries_per_s']:9.1f} q/s  "
            f"{records[-1]['latency_ms_median']:8.3f} ms  verified={ok}",
            flush=True,
        )
    return records


def markdown(records: list[dict]) -> str:
    header = (
        "| N | K | data | method | queries/s | latency median (ms) | p95 (ms) | build (s) | exact | "
        "k-th dist | file B/item | load (s) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in records:
        method = r["method"] + (f", {r['mih_bytes_per_item']:.0f} B/item RAM" if "mih_bytes_per_item" in r else "")
        rows.append(
            f"| {r['n_items']:,} | {r['bits']} | {r['data']} | {method} | {r['queries_per_s']:.0f} | "
            f"{r['latency_ms_median']:.2f} | {r['latency_ms_p95']:.2f} | {r['build_s']:.1f} | "
            f"{'yes' if r['verified'] else 'NO'} | {r['kth_distance_median']:.0f} | "
            f"{r['file_bytes_per_item']:.1f} | {r['load_s']:.2f} |"
        )
    return header + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated database sizes N")
    parser.add_argument("--bits", default="32,64", help="comma-separated code lengths K")
    parser.add_argument("--data", default="clustered:6,clustered:50,uniform", help="comma-separated data sets")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mih-substrings", default="default", help="MIH m values to time ('default' or ints)")
    parser.add_argument("--faiss-threads", type=int, default=1, help="OpenMP threads for faiss (fgmd is single-threaded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.mih_substrings = args.mih_substrings.split(",")
    if not faiss_available():
        raise SystemExit("the benchmark compares against faiss: pip install faiss-cpu")
    import faiss

    faiss.omp_set_num_threads(args.faiss_threads)
    meta = run_meta(faiss=faiss.__version__, faiss_threads=args.faiss_threads)
    print(json.dumps(meta, indent=1), flush=True)
    records = []
    with tempfile.TemporaryDirectory() as workdir:
        for n_items in (int(x) for x in args.sizes.split(",")):
            for bits in (int(x) for x in args.bits.split(",")):
                for kind in args.data.split(","):
                    print(f"N={n_items:,} K={bits} data={kind}", flush=True)
                    records += run_config(args, n_items, bits, kind, Path(workdir))
    table = markdown(records)
    print(table)
    write_json(args.out, meta, records, table)


if __name__ == "__main__":
    main()
