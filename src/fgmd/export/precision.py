"""Reduced-precision ONNX encoders: FP16 conversion and INT8 static quantization (QDQ).

Both start from the float32 export (``export.onnx.export_encoder``); the input ``image`` and
the output ``codes`` stay float32 in every precision, so an app feeds and reads the same
tensors whatever file it loads.

* ``fp16`` — ``onnxruntime.transformers.float16.convert_float_to_float16`` with
  ``keep_io_types=True``: weights and activations in float16, casts at the two ends.
  It runs on onnxruntime's CPU execution provider, but x86 CPUs without float16 arithmetic
  gain nothing from it; it is meant for GPUs (CUDA / TensorRT execution providers, Jetson).
* ``int8`` — ``onnxruntime.quantization.quantize_static`` in QDQ format (QuantizeLinear /
  DequantizeLinear pairs around each quantized operator, which onnxruntime's CPU provider
  fuses into integer kernels and TensorRT reads as explicit quantization): uint8
  activations, int8 weights, activation ranges from min/max calibration on images passed by
  the caller (``fgmd export`` uses images of the run's training split, preprocessed as in
  evaluation). The graph is first cleaned with ``quant_pre_process`` (shape inference and
  constant folding: the exported convolution biases are ``Constant`` nodes, which the
  quantizer would otherwise leave in float32).

``QuantizationOptions`` holds the usual remedies when INT8 costs accuracy: per-channel
weight scales, more calibration images, and groups of nodes kept in float32
(``keep_fp32``: ``"head"`` the hash head, ``"fdfsp"`` the FDFSP blocks, ``"adf"`` ADF),
which are passed to the quantizer as ``nodes_to_exclude``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fgmd.runtime.files import write_atomic

__all__ = [
    "KEEP_FP32_GROUPS",
    "PRECISIONS",
    "QuantizationOptions",
    "convert_fp16",
    "excluded_nodes",
    "quantize_int8",
]

PRECISIONS = ("fp32", "fp16", "int8")
# group name -> substring of the ONNX node names of that part of the encoder (the TorchScript
# exporter names nodes after the module path: "/head/layers/layers.0/MatMul", "/fdfsp.2/Mul", ...)
KEEP_FP32_GROUPS = {"head": "/head/", "fdfsp": "/fdfsp.", "adf": "/adf/"}


@dataclass(frozen=True)
class QuantizationOptions:
    """How an INT8 encoder is made.

    Attributes:
        calibration_images: images whose activation ranges set the quantization scales.
        per_channel: one weight scale per output channel instead of one per tensor.
        keep_fp32: groups of ``KEEP_FP32_GROUPS`` left in float32.
        batch_size: calibration batch size.
    """

    calibration_images: int = 128
    per_channel: bool = False
    keep_fp32: tuple[str, ...] = field(default_factory=tuple)
    batch_size: int = 16

    def __post_init__(self) -> None:
        unknown = [g for g in self.keep_fp32 if g not in KEEP_FP32_GROUPS]
        if unknown:
            raise ValueError(
                f"unknown node group(s) {unknown} to keep in float32; choose from {list(KEEP_FP32_GROUPS)}"
            )
        if self.calibration_images < 1 or self.batch_size < 1:
            raise ValueError(
                f"calibration needs at least one image and a positive batch size, got "
                f"{self.calibration_images} images, batch {self.batch_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keep_fp32": list(self.keep_fp32)}


def _save(model, path: Path) -> Path:
    """Write an ONNX ``ModelProto`` (under 2 GB, no external data) to ``path`` atomically."""
    return write_atomic(path, model.SerializeToString())


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Float16 copy of the float32 encoder ``src`` at ``dst`` (float32 input and output kept)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    return _save(model, Path(dst))


def excluded_nodes(model, groups: Sequence[str]) -> list[str]:
    """Names of the nodes of ``model`` (a ``ModelProto``) belonging to ``groups`` of ``KEEP_FP32_GROUPS``."""
    needles = [KEEP_FP32_GROUPS[g] for g in groups]
    return [node.name for node in model.graph.node if any(n in node.name for n in needles)]


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence the quantizer's per-node notices (it logs through the root logger) while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Batches:
    """``onnxruntime.quantization.CalibrationDataReader`` over ``[B, C, S, S]`` float32 batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]):
        self.input_name = input_name
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    batches: Iterable[np.ndarray],
    options: QuantizationOptions,
    input_name: str = "image",
) -> dict[str, Any]:
    """INT8 (QDQ) copy of the float32 encoder ``src`` at ``dst``, calibrated on ``batches``.

    Args:
        src: float32 ONNX encoder.
        dst: where the quantized encoder is written.
        batches: calibration images, ``[B, C, S, S]`` float32 arrays preprocessed exactly as
            the encoder's input (at most ``options.calibration_images`` of them are used).
        options: see :class:`QuantizationOptions`.

    Returns:
        What was done, for the sidecar: the options, the number of calibration images
        actually seen and the number of nodes kept in float32.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = Path(dst)
    seen = 0

    def limited():
        nonlocal seen
        for batch in batches:
            batch = batch[: options.calibration_images - seen]
            if len(batch) == 0:
                return
            seen += len(batch)
            yield batch

    with tempfile.TemporaryDirectory(dir=dst.parent) as work, _quiet_quantizer():
        cleaned = Path(work) / "cleaned.onnx"
        quant_pre_process(str(src), str(cleaned), skip_symbolic_shape=False)
        exclude = excluded_nodes(onnx.load(str(cleaned)), options.keep_fp32)
        if options.keep_fp32 and not exclude:
            raise ValueError(f"{src}: no node of the groups {list(options.keep_fp32)} to keep in float32")
        quantized = Path(work) / "int8.onnx"
        quantize_static(
            str(cleaned),
            str(quantized),
            _Batches(input_name, limited()),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=options.per_channel,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
        )
        if seen == 0:
            raise ValueError(f"{src}: no calibration images")
        _save(onnx.load(str(quantized)), dst)
    return {
        "method": "onnxruntime quantize_static, QDQ, uint8 activations (min/max calibration), int8 weights",
        **options.to_dict(),
        "calibration_images_used": seen,
        "nodes_kept_fp32": len(exclude),
    }
