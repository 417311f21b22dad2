"""Training throughput and peak memory: one batched pass per branch vs six separate passes.

Variants (each run in its own process, so peak memory does not mix):

* ``batched`` — the implementation (``Trainer.train_step``): per branch, anchors, positives and
  negatives go through the encoder as one ``3B`` batch (two encoder calls per step).
* ``naive`` — six separate encoder calls per step: anchor A, anchor B, then positive and
  negative of each direction (A's positives/negatives are encoded by branch A for the B->A
  triplets, and so on), concatenated into the same role-major layout, same objective, same
  optimiser step. Implemented here only, not in the library. Note that BatchNorm then
  normalises each call's ``B`` images separately, so it is not the same computation.

Each process builds the run as ``fgmd train`` would (``Trainer``), mines epoch 0 and trains
``--limit-batches`` batches of that epoch (0 = the whole epoch). Reported: pairs per second of
the optimisation steps (forward, backward, optimiser; the first step is a warm-up and is
excluded) and of the whole loop including data loading; peak RSS of the process
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and RSS before the first step. Runs alternate
variants (``--repeats``, ABAB) and the table shows medians.

Memory allocator (``--malloc``): with glibc's defaults, every tensor above the mmap threshold
(32 MiB at most) is mmap-ed when allocated and unmapped when freed, so each training step
page-faults and zeroes gigabytes again; the large ``3B`` batches of the batched step suffer
most (measured: same user time, ~5x the system time). ``no-mmap`` runs the process with
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=<64 GiB>``, so freed
memory is reused from the heap. Give both (``--malloc default,no-mmap``) to compare.

Data: ``--data`` (a folder-layout dataset), default the shared EuroSAT MS/PAN benchmark
(``shared/data/eurosat_rgb5_mspan`` next to the checkout) when present, else a generated demo
dataset.

Example::

    python benchmarks/bench_training.py --image-size 224 --batch-size 32 --limit-batches 5 --out train.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import find_shared_data, markdown_table, peak_rss_mib, run_meta, write_json

VARIANTS = ("batched", "naive")
MALLOC = {
    "default": None,
    "no-mmap": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736",
}


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def naive_step(trainer, batch: dict) -> tuple[dict, int]:
    """Six encoder calls per step (module docstring), then the same loss and update as ``train_step``."""
    import torch

    from fgmd.training.trainer import _role_major

    size = len(batch["index"])
    device = trainer.device
    codes, features, labels = {}, {}, {}
    outputs = {m: [None, None, None] for m in trainer.modalities}
    for m in trainer.modalities:  # anchor A, anchor B
        outputs[m][0] = trainer.model.encoders[m](batch[f"images_{m}"][:, 0].to(device))
    for m in trainer.modalities:  # positives and negatives, per direction
        for role in (1, 2):
            outputs[m][role] = trainer.model.encoders[m](batch[f"images_{m}"][:, role].to(device))
    for m in trainer.modalities:
        codes[m] = torch.cat([out.codes for out in outputs[m]]).float()
        features[m] = outputs[m][0].features
        labels[m] = _role_major(batch[f"labels_{m}"]).to(device)
    loss, terms = trainer.objective(codes, labels, features if trainer.objective.damd is not None else None)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()
    for m in trainer.modalities:
        trainer.bank[m][batch["index"]] = torch.where(codes[m][:size].detach().cpu() >= 0, 1, -1).to(torch.int8)
    return terms, size


def child(args) -> dict:
    """Train ``limit_batches`` batches of one variant in this process; return the measurements."""
    import torch
    from torch.utils.data import DataLoader

    from fgmd.config import load_config
    from fgmd.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    overrides = [
        f"data.root={args.data}",
        f"out_dir={args.workdir}/run_{args.child}",
        "data.modality={ms: {channels: 3}, pan: {channels: 1}}",
        f"data.image_size={args.image_size}",
        f"data.resize={round(args.image_size * 256 / 224)}",
        "data.val_fraction=0",
        f"data.num_workers={args.workers}",
        f"data.cache_images={'true' if args.cache else 'false'}",
        f"model.bits={args.bits}",
        f"model.width_mult={args.width}",
        f"train.batch_size={args.batch_size}",
        "train.device=cpu",
    ]
    config = load_config(None, overrides)
    trainer = Trainer(config, progress=False)
    triplets = trainer.mine(0)
    loader = DataLoader(
        triplets,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(0),
        drop_last=True,
    )
    step = trainer.train_step if args.child == "batched" else lambda batch: naive_step(trainer, batch)
    trainer.step_module.train()
    rss_before = current_rss_mib()
    peak_before = peak_rss_mib()
    import resource

    step_times, pairs, first_end = [], 0, None
    usage_start = None
    for number, batch in enumerate(loader):
        if args.limit_batches and number >= args.limit_batches:
            break
        start = time.perf_counter()
        _, size = step(batch)
        end = time.perf_counter()
        if number == 0:
            first_end = end  # warm-up step excluded
            usage_start = resource.getrusage(resource.RUSAGE_SELF)
        else:
            step_times.append(end - start)
            pairs += size
    loop_time = time.perf_counter() - first_end if first_end is not None else float("nan")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {}
    if usage_start is not None:  # after the warm-up step: where the time goes, and page faults
        cpu = {
            "user_s": usage.ru_utime - usage_start.ru_utime,
            "sys_s": usage.ru_stime - usage_start.ru_stime,
            "minor_page_faults": usage.ru_minflt - usage_start.ru_minflt,
        }
    return {
        "variant": args.child,
        "steps_timed": len(step_times),
        "pairs_timed": pairs,
        "pairs_per_s_steps": pairs / sum(step_times) if step_times else float("nan"),
        "pairs_per_s_loop": pairs / loop_time if step_times else float("nan"),
        "step_s_median": statistics.median(step_times) if step_times else float("nan"),
        "rss_before_mib": rss_before,
        "peak_rss_before_mib": peak_before,
        "peak_rss_mib": peak_rss_mib(),
        "train_pairs": len(triplets),
        **cpu,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder-layout dataset (default: shared EuroSAT, else demo data)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit-batches", type=int, default=0, help="batches per run (0 = one whole epoch)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, alternating (ABAB)")
    parser.add_argument("--threads", type=int, default=max(1, min(os.cpu_count() or 1, 2)))
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                        help="decode each image once (data.cache_images; default on)")
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--malloc", default="default", help=f"comma-separated allocator settings: {', '.join(MALLOC)}")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        args.child_out.write_text(json.dumps(child(args)))
        return

    with tempfile.TemporaryDirectory() as workdir:
        data = args.data or find_shared_data()
        data_note = "shared EuroSAT MS/PAN" if data is not None and args.data is None else str(data)
        if data is None:
            from fgmd.data.synthetic import generate_demo_dataset

            data = generate_demo_dataset(Path(workdir) / "demo", n_per_class=60, seed=0)
            data_note = "generated demo data (60 pairs per class)"
        meta = run_meta(data=str(data), data_note=data_note, image_size=args.image_size, batch_size=args.batch_size,
                        limit_batches=args.limit_batches, threads=args.threads, workers=args.workers)
        print(meta, flush=True)
        results = []
        variants = args.variants.split(",")
        mallocs = args.malloc.split(",")
        unknown = set(mallocs) - set(MALLOC)
        if unknown:
            raise SystemExit(f"unknown --malloc {sorted(unknown)}; choose from {list(MALLOC)}")
        runs = [(v, m) for m in mallocs for v in variants]
        for repeat in range(args.repeats):
            for variant, malloc in runs if repeat % 2 == 0 else runs[::-1]:
                out = Path(workdir) / f"{variant}_{malloc}_{repeat}.json"
                command = [sys.executable, __file__, "--child", variant, "--child-out", str(out), "--workdir", workdir,
                           "--data", str(data), "--image-size", str(args.image_size), "--batch-size",
                           str(args.batch_size), "--limit-batches", str(args.limit_batches), "--threads",
                           str(args.threads), "--workers", str(args.workers), "--bits", str(args.bits),
                           "--width", str(args.width), "--cache" if args.cache else "--no-cache"]
                env = dict(os.environ)
                if MALLOC[malloc]:
                    env["GLIBC_TUNABLES"] = MALLOC[malloc]
                run = subprocess.run(command, capture_output=True, text=True, env=env)
                if run.returncode != 0:
                    raise SystemExit(f"{variant} failed:\n{run.stderr[-3000:]}")
                record = {**json.loads(out.read_text()), "repeat": repeat, "malloc": malloc}
                results.append(record)
                print(f"{variant:8s} malloc={malloc:8s} repeat {repeat}: {record['pairs_per_s_steps']:.2f} pairs/s (steps), "
                      f"peak RSS {record['peak_rss_mib']:.0f} MiB, user {record.get('user_s', 0):.1f} s, "
                      f"sys {record.get('sys_s', 0):.1f} s, {record.get('minor_page_faults', 0):,} page faults",
                      flush=True)

    rows = []
    for variant, malloc in runs:
        chosen = [r for r in results if r["variant"] == variant and r["malloc"] == malloc]
        if not all("user_s" in r for r in chosen):  # a single batch: nothing was timed
            continue
        median = lambda key: statistics.median(r[key] for r in chosen)  # noqa: E731
        rows.append([variant, malloc, chosen[0]["train_pairs"], chosen[0]["steps_timed"], f"{median('pairs_per_s_steps'):.2f}",
                     f"{median('pairs_per_s_loop'):.2f}", f"{median('step_s_median'):.2f}",
                     f"{median('user_s'):.1f} / {median('sys_s'):.1f}",
                     f"{median('rss_before_mib'):.0f}", f"{median('peak_rss_mib'):.0f}",
                     f"{median('peak_rss_mib') - median('rss_before_mib'):.0f}"])
    table = markdown_table(
        ["variant", "malloc", "training pairs", "steps timed", "pairs/s (steps)", "pairs/s (incl. loading)",
         "step (s)", "CPU user / sys (s)", "RSS before (MiB)", "peak RSS (MiB)", "peak - before (MiB)"],
        rows,
    )
    print()
    print(table)
    write_json(args.out, meta, results, table)


if __name__ == "__main__":
    main()
