"""Encoder throughput: one FG-MD branch vs bare torchvision MobileNetV2, PyTorch eager vs onnxruntime.

Both models take 3-band ``S x S`` images (default 224). FG-MD is one ``ModalityEncoder``
(trunk + FDFSP + ADF + gated pool + hash head; codes only, as ``encode``); MobileNetV2 is
``torchvision.models.mobilenet_v2()`` with its 1000-way classifier. Under onnxruntime both are
exported the same way as ``fgmd export`` does (TorchScript exporter, ``dynamo=False``, opset
17, dynamic batch, FDFSP on its matmul DFT) and run on the CPU execution provider.

Realistic weights: neither model has trained weights here, and randomly initialised
BatchNorm statistics make activations drift into denormal floats, which slow PyTorch several
fold. So both models' BatchNorm statistics are **calibrated** on data: the generated demo
images (``fgmd.data.synthetic.generate_demo_dataset``, MS chips) upsampled to ``S``, ImageNet-
normalised, run through each model in train mode (cumulative averages) before switching to
eval. ``--flush-denormal`` additionally sets ``torch.set_flush_denormal(True)`` (off by default).

Measurement: for each thread count and batch size, rounds alternate the four runs
(FG-MD eager, MobileNetV2 eager, FG-MD ORT, MobileNetV2 ORT; the order reversed every other
round, ABBA), each run timing enough iterations to last ``--min-time`` seconds after one
warm-up call. Reported: median images/s over rounds, and the FG-MD/MobileNetV2 ratio as the
median of the per-round ratios (paired, so load changes on a shared machine cancel out).
Threads: ``torch.set_num_threads`` and ORT ``intra_op_num_threads``.

Precision (``--precisions``, onnxruntime only): besides ``fp32``, each model is also run as
written by ``fgmd export --precision``: ``fp16`` (float16 conversion), ``int8`` (static QDQ,
per-tensor, every node quantized) and ``int8-pc`` (per-channel weights; FG-MD keeps its FDFSP
blocks in float32, the setting that stayed within one mAP point on EuroSAT). INT8
calibration uses the same BatchNorm calibration images (only speed is measured here; the
accuracy cost is measured by ``fgmd export --check``). Reported per precision: FG-MD /
MobileNetV2 at that precision, and FG-MD's speed-up over its own fp32 file (median of the
per-round ratios).

OpenVINO (``--openvino``, needs ``pip install openvino``): the same fp32 ONNX files read by
OpenVINO's CPU plugin as a second runtime, reshaped to each static batch size, compiled with
``INFERENCE_NUM_THREADS`` = the thread count, the ``LATENCY`` hint and
``INFERENCE_PRECISION_HINT=f32`` (on CPUs with AVX-512 BF16 / AMX OpenVINO otherwise computes
in bf16, which would change the codes); timed in the same alternating rounds.

Goals (2-core CPU): FG-MD >= 0.85x MobileNetV2 in each runtime; FG-MD batch 1 under
onnxruntime >= 250 images/s; FG-MD INT8 >= 1.5x FG-MD fp32 at batch 32.

Example::

    python benchmarks/bench_encoder.py --threads 2,1 --batches 1,32 --rounds 5 --out encoder.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import markdown_table, run_meta, write_json


def build_models(image_size: int, bits: int, width: float):
    from torchvision.models import mobilenet_v2

    from fgmd.config import load_config
    from fgmd.export.onnx import CodesOnly
    from fgmd.models import model_from_config

    config = load_config(
        None,
        [
            "data.modality={ms: {channels: 3}, pan: {channels: 1}}",
            f"model.bits={bits}",
            f"model.width_mult={width}",
            f"data.image_size={image_size}",
        ],
    )
    fgmd_branch = CodesOnly(model_from_config(config).encoders[config.data.modalities[0]])
    torch.manual_seed(0)
    mobilenet = mobilenet_v2(weights=None, width_mult=width)
    return {"FG-MD": fgmd_branch, "MobileNetV2": mobilenet}


def calibration_images(image_size: int, count: int, workdir: Path) -> torch.Tensor:
    from fgmd.data.io import read_image
    from fgmd.data.synthetic import generate_demo_dataset
    from fgmd.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    root = generate_demo_dataset(workdir / "demo", n_per_class=max(1, -(-count // 6)), seed=0)
    paths = sorted((root / "images" / "ms").glob("*.png"))[:count]
    images = torch.stack([read_image(p) for p in paths])
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> None:
    """BatchNorm running statistics = cumulative averages over ``images`` (train-mode passes)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if len(batch) > 1:
            model(batch)
    model.eval()


def export(model: nn.Module, path: Path, image_size: int) -> Path:
    from fgmd.export.onnx import CodesOnly, export_encoder

    if isinstance(model, CodesOnly):
        return export_encoder(model.encoder, path, image_size)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3, image_size, image_size),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["codes"],
            dynamic_axes={"image": {0: "batch"}, "codes": {0: "batch"}},
            opset_version=17,
        )
    return path


def convert(model_name: str, fp32_path: Path, precision: str, images: torch.Tensor) -> Path:
    """The ``precision`` variant of an fp32 ONNX file, made as ``fgmd export`` makes it."""
    from fgmd.export.precision import QuantizationOptions, convert_fp16, quantize_int8

    out = fp32_path.with_name(f"{fp32_path.stem}.{precision}.onnx")
    if precision == "fp16":
        return convert_fp16(fp32_path, out)
    if precision not in ("int8", "int8-pc"):
        raise SystemExit(f"unknown precision {precision!r}: fp32, fp16, int8 or int8-pc")
    accurate = precision == "int8-pc"
    options = QuantizationOptions(
        calibration_images=len(images),
        per_channel=accurate,
        keep_fp32=("fdfsp",) if accurate and model_name == "FG-MD" else (),
    )
    batches = (images[i : i + 16].numpy() for i in range(0, len(images), 16))
    quantize_int8(fp32_path, out, batches, options)
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_request(path: Path, batch: int, image_size: int, threads: int):
    """An OpenVINO infer request of ONNX file ``path`` reshaped to ``[batch, 3, S, S]`` (float32 math)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape([batch, 3, image_size, image_size])
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    return core.compile_model(model, "CPU", config).create_infer_request()


def timed(run, batch: int, min_time: float) -> float:
    """Images per second of ``run()`` (one warm-up call, then enough calls for ``min_time`` s)."""
    run()
    calls, start = 0, time.perf_counter()
    while True:
        run()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return calls * batch / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--threads", default="2,1", help="comma-separated thread counts (torch and onnxruntime)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per timed run")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of both models")
    parser.add_argument("--calibration-images", type=int, default=48)
    parser.add_argument("--flush-denormal", action="store_true", help="also torch.set_flush_denormal(True)")
    parser.add_argument("--no-onnx", action="store_true", help="PyTorch eager only")
    parser.add_argument("--no-eager", action="store_true", help="onnxruntime only")
    parser.add_argument(
        "--precisions",
        default="fp32",
        help="comma-separated onnxruntime precisions: fp32, fp16, int8, int8-pc (module docs)",
    )
    parser.add_argument("--openvino", action="store_true", help="also time the fp32 ONNX files under OpenVINO (CPU)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.openvino and (args.no_onnx or "fp32" not in args.precisions.split(",")):
        parser.error("--openvino times the fp32 ONNX files: it needs the ONNX export and fp32 in --precisions")
    batches = [int(b) for b in args.batches.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    meta = run_meta(
        image_size=args.image_size,
        bits=args.bits,
        width=args.width,
        realistic_weights=f"BatchNorm calibrated on {args.calibration_images} demo MS images upsampled to "
        f"{args.image_size} (both models)" + ("; flush_denormal on" if args.flush_denormal else "; flush_denormal off"),
    )
    print(meta, flush=True)

    models = build_models(args.image_size, args.bits, args.width)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        images = calibration_images(args.image_size, args.calibration_images, workdir)
        for model in models.values():
            calibrate(model, images)
        sessions_paths = {}
        precisions = args.precisions.split(",")
        if not args.no_onnx:
            for name, model in models.items():
                fp32_path = export(model, workdir / f"{name}.onnx", args.image_size)
                for precision in precisions:
                    path = fp32_path if precision == "fp32" else convert(name, fp32_path, precision, images)
                    sessions_paths[(name, precision)] = path
            probe = images[:4]
            with torch.no_grad():
                expected = models["FG-MD"](probe).numpy()
            for precision in precisions:
                got = session(sessions_paths[("FG-MD", precision)], 1).run(None, {"image": probe.numpy()})[0]
                suffix = "" if precision == "fp32" else f"_{precision}"
                meta[f"fgmd_onnx{suffix}_max_abs_diff"] = float(np.abs(got - expected).max())
                meta[f"fgmd_onnx{suffix}_bit_flips"] = int(((got >= 0) != (expected >= 0)).sum())
            if args.openvino:
                import openvino

                meta["openvino"] = openvino.__version__
                request = openvino_request(sessions_paths[("FG-MD", "fp32")], len(probe), args.image_size, 1)
                got = next(iter(request.infer({0: probe.numpy()}).values()))
                meta["fgmd_openvino_max_abs_diff"] = float(np.abs(got - expected).max())
                meta["fgmd_openvino_bit_flips"] = int(((got >= 0) != (expected >= 0)).sum())

        results = []
        for threads in thread_counts:
            torch.set_num_threads(threads)
            sessions = {name: session(path, threads) for name, path in sessions_paths.items()}
            for batch in batches:
                x = images[:batch] if batch <= len(images) else images[torch.arange(batch) % len(images)]
                x = x.contiguous()
                x_np = x.numpy()
                runs = {}
                if not args.no_eager:
                    for name, model in models.items():
                        runs[(name, "PyTorch eager")] = lambda model=model: model(x)
                for (name, precision), sess in sessions.items():
                    runtime = "onnxruntime" + ("" if precision == "fp32" else f" {precision}")
                    runs[(name, runtime)] = lambda sess=sess: sess.run(None, {"image": x_np})
                if args.openvino:
                    for name in models:
                        request = openvino_request(sessions_paths[(name, "fp32")], batch, args.image_size, threads)
                        runs[(name, "OpenVINO")] = lambda request=request: request.infer({0: x_np})
                speeds = {key: [] for key in runs}
                keys = list(runs)
                with torch.no_grad():
                    for round_ in range(args.rounds):
                        for key in keys if round_ % 2 == 0 else keys[::-1]:
                            speeds[key].append(timed(runs[key], batch, args.min_time))
                for runtime in dict.fromkeys(r for _, r in speeds):
                    fg, mb = speeds[("FG-MD", runtime)], speeds[("MobileNetV2", runtime)]
                    ratio = statistics.median(a / b for a, b in zip(fg, mb))
                    fp32 = speeds.get(("FG-MD", "onnxruntime"))
                    speedup = (
                        statistics.median(a / b for a, b in zip(fg, fp32))
                        if fp32 is not None and (runtime.startswith("onnxruntime ") or runtime == "OpenVINO")
                        else None
                    )
                    record = {
                        "threads": threads,
                        "batch": batch,
                        "runtime": runtime,
                        "fgmd_images_per_s": statistics.median(fg),
                        "mobilenetv2_images_per_s": statistics.median(mb),
                        "ratio_median_paired": ratio,
                        "fgmd_speedup_vs_fp32_onnx": speedup,
                        "fgmd_rounds": fg,
                        "mobilenetv2_rounds": mb,
                    }
                    results.append(record)
                    print(
                        f"threads={threads} batch={batch} {runtime:14s} FG-MD {record['fgmd_images_per_s']:7.1f} "
                        f"MobileNetV2 {record['mobilenetv2_images_per_s']:7.1f} img/s  ratio {ratio:.3f}"
                        + (f"  FG-MD vs fp32 {speedup:.2f}x" if speedup is not None else ""),
                        flush=True,
                    )

    rows = []
    for r in results:
        goals = ["ratio >= 0.85: " + ("yes" if r["ratio_median_paired"] >= 0.85 else "no")]
        if r["runtime"] == "onnxruntime" and r["batch"] == 1:
            goals.append(">= 250 img/s: " + ("yes" if r["fgmd_images_per_s"] >= 250 else "no"))
        if r["runtime"].startswith("onnxruntime int8") and r["batch"] == 32:
            goals.append("INT8 >= 1.5x fp32: " + ("yes" if r["fgmd_speedup_vs_fp32_onnx"] >= 1.5 else "no"))
        rows.append(
            [
                r["threads"],
                r["batch"],
                r["runtime"],
                f"{r['fgmd_images_per_s']:.1f}",
                f"{r['mobilenetv2_images_per_s']:.1f}",
                f"{r['ratio_median_paired']:.3f}",
                "-" if r["fgmd_speedup_vs_fp32_onnx"] is None else f"{r['fgmd_speedup_vs_fp32_onnx']:.2f}x",
                "; ".join(goals),
            ]
        )
    table = markdown_table(
        [
            "threads",
            "batch",
            "runtime",
            "FG-MD branch (img/s)",
            "MobileNetV2 (img/s)",
            "FG-MD / MobileNetV2",
            "FG-MD vs its fp32 ONNX",
            "goal",
        ],
        rows,
    )
    print()
    print(table)
    write_json(args.out, meta, results, table)


if __name__ == "__main__":
    main()
