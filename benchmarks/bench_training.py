"""Training throughput: FG-MD at an older commit vs this checkout, and vs a plain dual MobileNetV2.

Variants (each in its own process, alternating ABC ABC … for ``--repeats`` rounds; tables show
medians):

* ``old-fgmd`` — FG-MD as trained by the code of ``--old`` (a git ref, checked out as a
  detached ``git worktree`` in a temporary folder, or ``--old-src`` pointing at its ``src/``).
* ``fgmd`` — FG-MD as trained by this checkout.
* ``fgmd-contiguous`` — this checkout with ``train.channels_last=false`` (the old code's memory
  layout), to separate the data-path gain from the layout gain.
* ``plain`` — this checkout with ``model.fdfsp=false model.adf=false loss.damd=false``: two
  bare MobileNetV2 trunks of the same width with the same hash/classifier heads, trained on the
  same data with the same objective minus the distillation term (the ablation's baseline).

Each process builds the run as ``fgmd train`` does (``Trainer``: data checks, decoding,
model, optimiser; "build s"), then times ``--epochs`` whole calls of ``Trainer.train_epoch``
(mining + every optimisation step + bank update). The first epoch is a warm-up and is not
counted unless it is the only one. Steps/s and images/s (6 images per triplet: anchor,
positive, negative in each modality) are over the timed epochs' wall time.

``--profile-steps N`` (this checkout only) then splits N further steps with
:class:`fgmd.training.trainer.StepClock` into data (building the augmented batch), forward,
backward and optimiser, beside the measured mining time per epoch. The clock waits for the
device at every phase boundary, so on a GPU the phases are serialised (their sum exceeds the
pipelined step time). ``--torch-profile`` then runs the same number of steps again under
torch.profiler (a separate pass, so the profiler's overhead is not in the phase times) and
prints its top operators. Peak RSS and the build time (data checks, decoding, model) are
reported per variant.

``--trunk-check`` also times a bare torchvision MobileNetV2 trunk (``model.width_mult``, 3-band
``data.image_size``² inputs) forward + backward on ``3 × batch_size`` images, contiguous and
channels_last: a machine-speed figure to compare CPUs by (on a 2-core AVX2-only EPYC, 0.52 s
contiguous at width 0.5, 64 px, batch 32 was reported). On a CUDA device the GPU utilisation is
sampled every 0.1 s during the timed epochs (``torch.cuda.utilization``, needs pynvml).

Data: ``--data`` (a folder-layout dataset; default: the demo's procedural dataset, generated
into a temporary folder), trained with ``--config`` (default: the demo config) and ``KEY=VALUE``
overrides. The same CPU allocator tuning as the ``fgmd`` CLI is applied in every process.

Example (old main vs this checkout on the demo data, 2 threads)::

    python benchmarks/bench_training.py --old 2ed294b --epochs 3 --repeats 2 --profile-steps 20 --out training.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Overrides of the variants that run this checkout with a different configuration.
VARIANT_OVERRIDES = {
    "fgmd-contiguous": ["train.channels_last=false"],
    "plain": ["model.fdfsp=false", "model.adf=false", "loss.damd=false"],
}


def worker(spec: dict) -> dict:
    """One variant's measurements (runs in a fresh process importing fgmd from ``spec['src']``)."""
    sys.path.insert(0, spec["src"])
    import torch

    torch.set_num_threads(spec["threads"])
    from fgmd.allocator import tune_cpu_allocator
    from fgmd.config import load_config
    from fgmd.training.trainer import Trainer

    tune_cpu_allocator()
    config = load_config(spec["config"], spec["overrides"])
    start = time.perf_counter()
    trainer = Trainer(config, progress=False)
    build_s = time.perf_counter() - start
    pairs = len(trainer.train_set)
    steps = -(-pairs // config.train.batch_size)
    sampler = UtilisationSampler(trainer.device)
    epochs = []
    for epoch in range(spec["epochs"]):
        if epoch == 1 or spec["epochs"] == 1:
            sampler.start()
        start = time.perf_counter()
        record = trainer.train_epoch(epoch)
        epochs.append({"wall_s": time.perf_counter() - start, "mining_s": record.get("mining_s")})
    sampler.stop()
    timed = epochs[1:] or epochs
    wall = sum(e["wall_s"] for e in timed)
    result = {
        "build_s": build_s,
        "pairs": pairs,
        "steps_per_epoch": steps,
        "epoch_s": wall / len(timed),
        "steps_per_s": steps * len(timed) / wall,
        "images_per_s": 6 * pairs * len(timed) / wall,
        "mining_s": statistics.mean(e["mining_s"] for e in timed) if timed[0]["mining_s"] is not None else None,
        "gpu_utilisation": sampler.mean(),
        "fgmd_module": __import__("fgmd").__file__,
        "epochs": epochs,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if spec["trunk_check"]:
        result["trunk_fwd_bwd_s"] = trunk_check(config)
    if spec["profile_steps"]:
        result["profile"] = profile_steps(trainer, spec["profile_steps"], spec["epochs"], spec["torch_profile"])
    return result


def trunk_check(config, repeats: int = 5) -> dict:
    """Median seconds of a bare MobileNetV2 trunk forward + backward on ``3B`` images, per memory layout."""
    import torch
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    trunk = mobilenet_v2(width_mult=config.model.width_mult).features
    size = config.data.image_size
    images = torch.rand(3 * config.train.batch_size, 3, size, size)
    seconds = {}
    for layout in ("contiguous", "channels_last"):
        memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        trunk.to(memory_format=memory_format)
        batch = images.contiguous(memory_format=memory_format)
        times = []
        for _ in range(repeats + 1):  # the first builds oneDNN primitives
            start = time.perf_counter()
            trunk(batch).sum().backward()
            times.append(time.perf_counter() - start)
        seconds[layout] = statistics.median(times[1:])
    return seconds


def profile_steps(trainer, count: int, epoch: int, torch_profile: bool) -> dict:
    """Mean seconds per step of each phase over ``count`` steps (data, forward, backward, optimiser)."""
    import torch

    from fgmd.training.trainer import StepClock

    positives, negatives = trainer.mine(epoch)
    clock = StepClock(trainer.device)
    run_steps(trainer, positives, negatives, epoch, count, clock)
    phases = {phase: seconds / count for phase, seconds in clock.totals.items()}
    if torch_profile:
        with torch.profiler.profile() as profiler:
            run_steps(trainer, positives, negatives, epoch, count, None)
        phases["torch_profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return phases


def run_steps(trainer, positives, negatives, epoch: int, count: int, clock) -> None:
    """``count`` optimisation steps on the batches of ``epoch`` (and the next ones if needed)."""
    from fgmd.training.trainer import StepClock

    clock_or_dummy = clock or StepClock(trainer.device)
    done = 0
    while done < count:
        for batch in _timed_batches(trainer.batches(epoch, positives, negatives), clock_or_dummy):
            trainer.train_step(batch, clock)
            done += 1
            if done == count:
                break
        epoch += 1


def _timed_batches(batches, clock):
    clock.reset()
    for batch in batches:
        clock.lap("data")
        yield batch
        clock.reset()


class UtilisationSampler:
    """Mean GPU utilisation (%) sampled every 0.1 s between :meth:`start` and :meth:`stop` (CUDA only)."""

    def __init__(self, device):
        self.device, self.samples, self._thread = device, [], None

    def start(self) -> None:
        import threading

        import torch

        if self.device.type != "cuda":
            return
        try:
            torch.cuda.utilization(self.device)
        except Exception:  # pynvml missing or no NVML: report no utilisation rather than guess
            return
        self._running = True

        def sample():
            while self._running:
                self.samples.append(torch.cuda.utilization(self.device))
                time.sleep(0.1)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._running = False
            self._thread.join()

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def old_checkout(ref: str, folder: Path) -> Path:
    """``ref`` of this repository as a detached worktree in ``folder``; returns its ``src``."""
    subprocess.run(
        ["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(folder), ref],
        check=True,
        capture_output=True,
    )
    return folder / "src"


def run_variant(name: str, src: Path, args, config: str, overrides: list[str]) -> dict:
    spec = {
        "src": str(src),
        "config": config,
        "overrides": overrides,
        "threads": args.threads,
        "epochs": args.epochs,
        "profile_steps": args.profile_steps if name != "old-fgmd" else 0,
        "torch_profile": args.torch_profile and name == "fgmd",
        "trunk_check": args.trunk_check and name == "plain",
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env, cwd=str(HERE)
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--old", default="2ed294b", help="git ref of the old code (default: before the batched data path)"
    )
    parser.add_argument("--old-src", type=Path, help="src/ folder of the old code instead of --old")
    parser.add_argument("--variants", default="old-fgmd,fgmd,fgmd-contiguous,plain")
    parser.add_argument("--data", type=Path, help="folder-layout dataset (default: the generated demo data)")
    parser.add_argument("--config", help="run config (default: the demo config)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per process; the first is a warm-up")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--torch-profile", action="store_true")
    parser.add_argument("--trunk-check", action="store_true", help="also time a bare torchvision trunk (docs)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for every variant")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    from _common import markdown_table, run_meta, write_json
    from fgmd.data.synthetic import generate_demo_dataset
    from fgmd.demo import DEMO_PAIRS_PER_CLASS, demo_config_path

    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = generate_demo_dataset(tmp / "demo_data", n_per_class=DEMO_PAIRS_PER_CLASS, seed=0)
        config = args.config or str(demo_config_path())
        sources = {name: HERE.parent / "src" for name in ("fgmd", "fgmd-contiguous", "plain")}
        if "old-fgmd" in variants:
            sources["old-fgmd"] = args.old_src or old_checkout(args.old, tmp / "old")
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        try:
            for repeat in range(args.repeats):
                for name in variants:
                    overrides = [f"data.root={data}", f"out_dir={tmp / 'runs' / name / str(repeat)}", *args.overrides]
                    overrides += VARIANT_OVERRIDES.get(name, [])
                    result = run_variant(name, sources[name], args, config, overrides)
                    runs[name].append(result)
                    print(
                        f"{name} #{repeat}: {result['epoch_s']:.2f} s/epoch, {result['steps_per_s']:.3f} steps/s",
                        file=sys.stderr,
                    )
        finally:
            if "old-fgmd" in variants and args.old_src is None:
                subprocess.run(
                    ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(tmp / "old")],
                    capture_output=True,
                )

    def median(name, key):
        values = [r[key] for r in runs[name] if r.get(key) is not None]
        return statistics.median(values) if values else None

    base = median("old-fgmd", "steps_per_s") if "old-fgmd" in runs else None
    fgmd = median("fgmd", "steps_per_s") if "fgmd" in runs else None
    rows, results = [], []
    for name in variants:
        sps = median(name, "steps_per_s")
        spread = [r["steps_per_s"] for r in runs[name]]
        mining = median(name, "mining_s")
        gpu = median(name, "gpu_utilisation")
        rows.append(
            [
                name,
                runs[name][0]["steps_per_epoch"],
                f"{median(name, 'epoch_s'):.2f}",
                f"{sps:.3f} ({min(spread):.3f}–{max(spread):.3f})",
                f"{median(name, 'images_per_s'):.0f}",
                f"{mining:.3f}" if mining is not None else "–",
                f"{sps / base:.2f}×" if base else "–",
                f"{fgmd / sps:.2f}×" if fgmd else "–",
                f"{median(name, 'build_s'):.1f}",
                f"{median(name, 'peak_rss_mib'):.0f}",
                f"{gpu:.0f}%" if gpu is not None else "–",
            ]
        )
        results.append({"variant": name, "runs": runs[name]})
    table = markdown_table(
        [
            "variant",
            "steps/epoch",
            "epoch s",
            "steps/s (min–max)",
            "images/s",
            "mining s/epoch",
            "vs old-fgmd",
            "fgmd vs this",
            "build s",
            "peak RSS MiB",
            "GPU util.",
        ],
        rows,
    )
    phase_rows = []
    for name in variants:
        profiles = [r["profile"] for r in runs[name] if "profile" in r]
        if profiles:
            phases = ("data", "forward", "backward", "optimiser")
            means = {p: statistics.median(pr[p] for pr in profiles) * 1000 for p in phases}
            phase_rows.append([name, *(f"{means[p]:.1f}" for p in phases), f"{sum(means.values()):.1f}"])
    if phase_rows:
        table += "\nms per step (phases timed with a device sync at each boundary):\n\n" + markdown_table(
            ["variant", "data", "forward", "backward", "optimiser", "sum"], phase_rows
        )
    trunks = [r["trunk_fwd_bwd_s"] for r in runs.get("plain", []) if "trunk_fwd_bwd_s" in r]
    if trunks:
        table += (
            "\nbare torchvision MobileNetV2 trunk, forward + backward of 3B images, s: "
            + ", ".join(f"{layout} {statistics.median(t[layout] for t in trunks):.3f}" for layout in trunks[0])
            + "\n"
        )
    print(table)
    for name in variants:
        for r in runs[name]:
            if "torch_profile" in r.get("profile", {}):
                print(f"torch.profiler, {name}:\n{r['profile']['torch_profile']}")
                break
    meta = run_meta(
        old=args.old if args.old_src is None else str(args.old_src),
        threads=args.threads,
        epochs=args.epochs,
        repeats=args.repeats,
        data=str(args.data or "demo"),
    )
    write_json(args.out, meta, results, table)


if __name__ == "__main__":
    main()
