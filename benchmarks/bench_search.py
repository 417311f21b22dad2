"""Benchmark Hamming top-k search: fgmd's backends vs every faiss binary index vs numpy.

For every (N, K, data set): generate database and query codes, build an ``fgmd.retrieval.Index``
(ids + labels), save it and time ``Index.load``, then measure on the same queries

* throughput: one batched ``search`` of all queries, queries/s (median over rounds, the
  methods interleaved round by round so load changes on a shared machine hit all alike);
* latency: batches of one query, median and p95 ms (methods interleaved per query);

and verify exactness against the numpy scan: fgmd backends must match it exactly
(indices and distances, ties by position); raw faiss must match it up to the order of
ties (same distances; returned ids carry the distances faiss reports).

Methods. Exact: fgmd ``auto`` (and ``mih``, ``faiss``, ``numpy`` when auto picks another),
faiss ``IndexBinaryFlat``, faiss ``IndexBinaryMultiHash`` tuned per row (for each ``nhash``
of ``--multihash-nhash``, ``b = K / nhash``, the smallest ``nflip`` whose distances equal
the flat scan on the first ``--tune-queries`` queries, default all; the fastest such setting
is timed on all queries and its exactness reported on all of them). Approximate (``--approximate``): faiss
``IndexBinaryIVF`` (nlist = fgmd's default, nprobe swept by ``--nprobe``), faiss
``IndexBinaryHNSW`` (M = 32, efSearch swept by ``--ef-search``; built only up to
``--hnsw-max-items`` items: its build is slow) and fgmd's ``ivf`` backend calibrated to a
0.95 recall target (and at fixed ``--fgmd-nprobe`` values, same trained clusters); for these the table gives recall@k against the exact answer
(``fgmd.retrieval.backends.faiss_ivf.recall_at_k``: ties counted by distance) beside
queries/s.

Data sets: ``uniform`` (random codes: no structure, MIH's worst case), ``clustered:C``
(C class centres, each code = its centre with every bit flipped with a per-item
probability drawn from [0.05, 0.15], like codes of a trained hashing model; queries come
from the same centres) and ``model:FILE.npz`` — **codes of a trained model**: ``FILE``
holds ``pool`` (packed database-side codes, e.g. every PAN image of a dataset) and
``queries`` (packed query codes of the other modality), written by ``--encode CHECKPOINT``.
The database is the pool extended to N items: item ``i`` is pool code ``i % P`` for the
first ``P`` items, and afterwards a pool code chosen at random with each bit flipped with a
per-item probability drawn from [0, ``--model-noise``] (default 0.1): new images near the
real ones, as a larger archive of the same scenes would give. Queries are the real queries.

Example::

    python benchmarks/bench_search.py --sizes 1000000,10000000 --bits 32,64 \\
        --data clustered:6,clustered:50,uniform --out results.json

A quick smoke run: ``--sizes 20000 --queries 50 --latency-queries 10 --rounds 1``.
Codes of a trained model (both branches; PAN pool = train + database splits, MS queries)::

    python benchmarks/bench_search.py --encode runs/eurosat/best.pt --codes eurosat32.npz
    python benchmarks/bench_search.py --sizes 1000000 --bits 32 --data model:eurosat32.npz --approximate
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import run_meta, write_json  # noqa: E402 (also puts src/ on sys.path)
from fgmd.codes import popcount_rows, word_view  # noqa: E402
from fgmd.retrieval import Index, resolve_backend  # noqa: E402
from fgmd.retrieval.backends import faiss_available  # noqa: E402
from fgmd.retrieval.backends.faiss_ivf import default_nlist, recall_at_k  # noqa: E402

_CHUNK = 1_000_000


def encode_model_codes(checkpoint: Path, out: Path, pool_modality: str | None, pool_splits: list[str]) -> None:
    """Write ``pool`` (database-side codes) and ``queries`` (the query split, other modality) to ``out``."""
    from fgmd.api import load_model
    from fgmd.codes import pack_codes
    from fgmd.data.datasets import build_dataset
    from fgmd.data.transforms import build_transforms
    from fgmd.evaluation.evaluate import encode_images

    model, config = load_model(checkpoint)
    data = config.data
    pool_modality = pool_modality or data.modalities[-1]
    query_modality = next(m for m in data.modalities if m != pool_modality)
    transforms = build_transforms(data, train=False)
    pool = [
        encode_images(model, build_dataset(data, split).images(pool_modality, transforms[pool_modality]))
        for split in pool_splits
    ]
    queries = encode_images(
        model, build_dataset(data, data.query_split).images(query_modality, transforms[query_modality])
    )
    np.savez(
        out,
        pool=pack_codes(np.concatenate([p.numpy() for p in pool])),
        queries=pack_codes(queries.numpy()),
        description=f"{checkpoint}: {pool_modality} codes of splits {pool_splits} (pool), "
        f"{query_modality} codes of split {data.query_split!r} (queries)",
    )
    print(f"wrote {out}: {sum(len(p) for p in pool)} pool codes, {len(queries)} queries, {model.bits} bits")


def model_codes(path: str, n_items: int, bits: int, n_queries: int, noise: float, seed: int):
    """Database of ``n_items`` codes grown from a trained model's pool (module docs) and its real queries."""
    stored = np.load(path)
    pool, queries = stored["pool"], stored["queries"][:n_queries]
    if pool.shape[1] * 8 != bits:
        raise SystemExit(f"{path} holds {pool.shape[1] * 8}-bit codes, not {bits}")
    rng = np.random.default_rng(seed)
    db = np.empty((n_items, bits // 8), dtype=np.uint8)
    first = min(n_items, len(pool))
    db[:first] = pool[:first]
    for start in range(first, n_items, _CHUNK):
        stop = min(start + _CHUNK, n_items)
        base = np.unpackbits(pool[rng.integers(0, len(pool), stop - start)], axis=1).astype(bool)
        flip_p = rng.uniform(0, noise, (stop - start, 1)).astype(np.float32)
        db[start:stop] = np.packbits(base ^ (rng.random((stop - start, bits), dtype=np.float32) < flip_p), axis=1)
    return db, queries, None


def make_codes(kind: str, n_items: int, n_queries: int, bits: int, seed: int, noise: float = 0.1):
    """``(db [N, K/8], queries [Q, K/8], labels [N, C] or None)`` for a data set name."""
    if kind.startswith("model:"):
        return model_codes(kind.partition(":")[2], n_items, bits, n_queries, noise, seed)
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


def tune_multihash(db, queries, reference_distances, bits: int, k: int, nhash_choices, max_nflip: int):
    """Fastest exact faiss ``IndexBinaryMultiHash`` setting on ``queries`` (module docs).

    Returns ``(index, settings dict)``, or ``(None, {"tried": ...})`` when no setting tried was exact.
    """
    import faiss

    best, tried = None, []
    for nhash in nhash_choices:
        b = bits // nhash
        if b < 1 or b > 64:
            continue
        start = time.perf_counter()
        index = faiss.IndexBinaryMultiHash(bits, nhash, b)
        index.add(db)
        build = time.perf_counter() - start
        for nflip in range(max_nflip + 1):
            index.nflip = nflip
            start = time.perf_counter()
            distances, _ = index.search(queries, k)
            elapsed = time.perf_counter() - start
            exact = bool(np.array_equal(distances.astype(np.int64), reference_distances.astype(np.int64)))
            tried.append({"nhash": nhash, "b": b, "nflip": nflip, "exact": exact, "tune_s": elapsed})
            if exact:
                if best is None or elapsed < best[1]["tune_s"]:
                    best = (index, {"nhash": nhash, "b": b, "nflip": nflip, "tune_s": elapsed, "build_s": build})
                break
    if best is None:
        return None, {"tried": tried}
    best[1]["tried"] = tried
    return best


def run_config(args, n_items: int, bits: int, kind: str, workdir: Path) -> list[dict]:
    import faiss  # the comparison needs it even though fgmd does not

    db, queries, labels = make_codes(kind, n_items, args.queries, bits, args.seed, args.model_noise)
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
        extra = (
            {"substrings": engine.substrings, "mih_bytes_per_item": engine.nbytes / n_items}
            if engine.name == "mih"
            else {}
        )
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
    methods["faiss IndexBinaryFlat (raw)"] = {
        "batch": lambda q: flat.search(q, args.k),
        "build_s": 0.0,
        "exact": "ties",
    }
    if args.numpy_max_items >= n_items:
        fgmd_method("numpy brute force", "numpy")

    reference = index.search(queries, args.k, "numpy")
    db_words, query_words = word_view(db), word_view(queries)
    if args.multihash_nhash:
        tune = min(args.tune_queries or len(queries), len(queries))
        multihash, settings = tune_multihash(
            db, queries[:tune], reference.distances[:tune], bits, args.k, args.multihash_nhash, args.max_nflip
        )
        if multihash is None:
            print(f"  faiss IndexBinaryMultiHash: no exact setting among {settings['tried']}", flush=True)
        else:
            label = (
                f"faiss IndexBinaryMultiHash (nhash={settings['nhash']}, b={settings['b']}, nflip={settings['nflip']})"
            )
            methods[label] = {
                "batch": lambda q, index=multihash: index.search(q, args.k),
                "build_s": settings["build_s"],
                "exact": "ties",
                "multihash": settings,
            }
    if args.approximate:
        ivf_nlist = default_nlist(n_items)
        start = time.perf_counter()
        ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, ivf_nlist)
        sample = np.random.default_rng(args.seed).choice(n_items, min(n_items, 64 * ivf_nlist), replace=False)
        ivf.train(db[np.sort(sample)])
        ivf.add(db)
        ivf_build = time.perf_counter() - start

        def ivf_search(q, nprobe):
            ivf.nprobe = nprobe
            return ivf.search(q, args.k)

        for nprobe in args.nprobe:
            if nprobe <= ivf_nlist:
                methods[f"faiss IndexBinaryIVF (nlist={ivf_nlist}, nprobe={nprobe})"] = {
                    "batch": lambda q, p=nprobe: ivf_search(q, p),
                    "build_s": ivf_build,
                    "exact": "approx",
                }
        if n_items <= args.hnsw_max_items:
            start = time.perf_counter()
            hnsw = faiss.IndexBinaryHNSW(bits, 32)
            hnsw.add(db)
            hnsw_build = time.perf_counter() - start

            def hnsw_search(q, ef):
                hnsw.hnsw.efSearch = ef
                return hnsw.search(q, args.k)

            for ef in args.ef_search:
                methods[f"faiss IndexBinaryHNSW (M=32, efSearch={ef})"] = {
                    "batch": lambda q, e=ef: hnsw_search(q, e),
                    "build_s": hnsw_build,
                    "exact": "approx",
                }
        start = time.perf_counter()
        engine = index.backend("ivf", recall_target=0.95)
        methods[f"fgmd ivf (recall target 0.95 -> nprobe={engine.nprobe} of {engine.nlist})"] = {
            "batch": lambda q: index.search(q, args.k, "ivf", recall_target=0.95),
            "build_s": time.perf_counter() - start,
            "exact": "approx",
            "calibrated_recall": engine.calibrated_recall,
        }

        def fgmd_ivf_at(q, nprobe):
            calibrated, engine.nprobe = engine.nprobe, nprobe
            try:
                return engine.topk(q, args.k)
            finally:
                engine.nprobe = calibrated

        for nprobe in args.fgmd_nprobe:
            methods[f"fgmd ivf (nprobe={nprobe} of {engine.nlist})"] = {
                "batch": lambda q, p=nprobe: fgmd_ivf_at(q, p),
                "build_s": 0.0,
                "exact": "approx",
            }
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
            if method["exact"] == "approx":
                continue
            start = time.perf_counter()
            method["batch"](one)
            latencies[label].append(time.perf_counter() - start)

    records = []
    for label, method in methods.items():
        distances, indices = outputs[label]
        recall = None
        if method["exact"] == "exact":
            ok = check_exact((distances, indices), reference)
        elif method["exact"] == "ties":
            ok = check_up_to_ties(distances, indices, reference, db_words, query_words)
        else:  # approximate: recall of the true distances of what was returned
            true = popcount_rows(db_words[np.maximum(indices, 0)] ^ query_words[:, None, :])
            true = np.where(indices < 0, bits + 1, true)
            recall = float(recall_at_k(true, reference.distances).mean())
            ok = None
        lat = np.array(latencies[label]) * 1e3 if latencies[label] else np.array([np.nan])
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
                "verification": {"exact": "identical to numpy scan", "ties": "identical up to tie order"}.get(
                    method["exact"], f"approximate: recall@{args.k} {recall:.4f}" if recall is not None else ""
                ),
                "exact": method["exact"] != "approx",
                "recall": recall,
                "kth_distance_median": float(np.median(reference.distances[:, -1])),
                "file_bytes_per_item": file_bytes / n_items,
                "code_bytes_per_item": bits / 8,
                "load_s": float(np.median(load_seconds)),
                **{
                    key: method[key]
                    for key in ("substrings", "mih_bytes_per_item", "multihash", "calibrated_recall")
                    if key in method
                },
            }
        )
        print(
            f"  {label:34s} {records[-1]['queries_per_s']:9.1f} q/s  "
            f"{records[-1]['latency_ms_median']:8.3f} ms  "
            + (f"verified={ok}" if recall is None else f"recall@{args.k}={recall:.4f}"),
            flush=True,
        )
    return records


def markdown(records: list[dict]) -> str:
    """One row per method; ``vs flat`` = queries/s over faiss IndexBinaryFlat's in the same row group."""
    header = (
        "| N | K | data | method | queries/s | vs faiss flat | latency median (ms) | build (s) | exact / recall@k | "
        "k-th dist |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    flat = {
        (r["n_items"], r["bits"], r["data"]): r["queries_per_s"]
        for r in records
        if r["method"].startswith("faiss IndexBinaryFlat")
    }
    rows = []
    for r in records:
        method = r["method"] + (f", {r['mih_bytes_per_item']:.0f} B/item RAM" if "mih_bytes_per_item" in r else "")
        base = flat.get((r["n_items"], r["bits"], r["data"]))
        quality = f"{r['recall']:.4f}" if r.get("recall") is not None else ("yes" if r["verified"] else "NO")
        rows.append(
            f"| {r['n_items']:,} | {r['bits']} | {r['data']} | {method} | {r['queries_per_s']:.0f} | "
            f"{r['queries_per_s'] / base:.2f}x | {r['latency_ms_median']:.2f} | {r['build_s']:.1f} | "
            f"{quality} | {r['kth_distance_median']:.0f} |"
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
    parser.add_argument(
        "--faiss-threads", type=int, default=1, help="OpenMP threads for faiss (fgmd is single-threaded)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numpy-max-items", type=int, default=2_000_000, help="time the numpy scan up to this N")
    parser.add_argument(
        "--multihash-nhash", default="1,2,4,8", help="faiss IndexBinaryMultiHash nhash values to tune over ('' to skip)"
    )
    parser.add_argument("--max-nflip", type=int, default=3, help="largest MultiHash nflip tried per nhash")
    parser.add_argument("--tune-queries", type=int, default=0, help="queries used to tune MultiHash (0: all)")
    parser.add_argument("--approximate", action="store_true", help="also time faiss IVF / HNSW and fgmd's ivf backend")
    parser.add_argument("--nprobe", default="1,2,4,8,16,32,64", help="IndexBinaryIVF nprobe sweep")
    parser.add_argument("--ef-search", default="16,64,256", help="IndexBinaryHNSW efSearch sweep")
    parser.add_argument("--fgmd-nprobe", default="", help="also time fgmd's ivf backend at these nprobe values")
    parser.add_argument("--hnsw-max-items", type=int, default=1_000_000, help="build IndexBinaryHNSW up to this N")
    parser.add_argument(
        "--model-noise", type=float, default=0.1, help="model:FILE data: largest per-bit flip probability"
    )
    parser.add_argument(
        "--encode",
        type=Path,
        metavar="CHECKPOINT",
        help="only write the model:FILE codes of this checkpoint to --codes, then exit",
    )
    parser.add_argument("--codes", type=Path, help="with --encode: the .npz to write")
    parser.add_argument(
        "--pool-splits", default="train,database", help="with --encode: splits of the database modality"
    )
    parser.add_argument("--pool-modality", help="with --encode: database-side modality (default: the last one)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.encode:
        if not args.codes:
            raise SystemExit("--encode needs --codes FILE.npz")
        encode_model_codes(args.encode, args.codes, args.pool_modality, args.pool_splits.split(","))
        return
    args.mih_substrings = args.mih_substrings.split(",")
    args.multihash_nhash = [int(x) for x in args.multihash_nhash.split(",") if x]
    args.nprobe = [int(x) for x in args.nprobe.split(",") if x]
    args.fgmd_nprobe = [int(x) for x in args.fgmd_nprobe.split(",") if x]
    args.ef_search = [int(x) for x in args.ef_search.split(",")]
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
