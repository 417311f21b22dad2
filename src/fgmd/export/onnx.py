"""ONNX export of the FG-MD encoders: one file per branch, plus a JSON sidecar for edge apps.

``export_checkpoint(checkpoint, out_dir)`` writes, for each modality ``m`` of the model:

* ``<m>.onnx`` — input ``image`` ``[batch, C, S, S]`` float32 (normalised as in the sidecar),
  output ``codes`` ``[batch, K]`` float32 in (-1, 1); the batch dimension is dynamic, the
  spatial size ``S`` is fixed (FDFSP's DFT matrices are constants of the graph).
* ``<m>.json`` — what an app needs to preprocess and binarise: image size, resize, band
  count, per-band mean/std, the bit rule, the encoder identity (weights sha256), so the
  app can check an index was made by the same checkpoint, and the numeric precision of the
  file (``fp32``, ``fp16`` or ``int8``, see :mod:`.precision`; INT8 files also record how
  they were calibrated). ``export.parity.check_onnx`` adds its measured figures under
  ``"check"``.

How it is exported
    FDFSP is switched to its matmul DFT (``FDFSP.use_matmul_dft``, real ``MatMul``/``Mul``/
    ``Add`` only; ``torch.fft`` does not export reliably, docs/DESIGN.md §5) for the export and
    switched back afterwards. The TorchScript-based exporter is used (``dynamo=False``,
    passed explicitly): it exports FDFSP and ADF in about a second and the result runs in
    onnxruntime. The dynamo exporter also produces a working graph but takes ~30x longer,
    and tracing with fake tensors leaves fake tensors in FDFSP's cached DFT matrices. The
    example batch has 2 images, so the batch dimension is not specialised to 1.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fgmd.config import Config
from fgmd.data.preprocess import Preprocessor
from fgmd.models.encoder import ModalityEncoder
from fgmd.models.fdfsp import FDFSP
from fgmd.retrieval.identity import weights_sha256
from fgmd.runtime.files import make_folder, write_atomic

from .precision import PRECISIONS, QuantizationOptions, convert_fp16, quantize_int8

__all__ = [
    "EXPORT_FORMATS",
    "ExportedBranch",
    "calibration_batches",
    "export_checkpoint",
    "export_encoder",
    "matmul_dft",
    "sidecar",
    "write_json_atomic",
]

EXPORT_FORMATS = ("onnx",)
INPUT_NAME = "image"
OUTPUT_NAME = "codes"
DEFAULT_OPSET = 17
# Sidecar layout. 1: preprocessing without band selection and radiometry; 2: "preprocessing" is
# the full Preprocessor.spec() (bands, scaling bounds, invert, equalize, sizes, mean/std).
# Readers (the parity check) accept both.
SIDECAR_VERSION = 2


class CodesOnly(nn.Module):
    """``image [B, C, S, S] -> codes [B, K]``: an encoder without its level maps."""

    def __init__(self, encoder: ModalityEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(image)


@contextmanager
def matmul_dft(module: nn.Module) -> Iterator[None]:
    """Switch every FDFSP in ``module`` to the exportable matmul DFT; restore on exit."""
    blocks = [m for m in module.modules() if isinstance(m, FDFSP)]
    previous = [block.use_matmul_dft for block in blocks]
    for block in blocks:
        block.use_matmul_dft = True
    try:
        yield
    finally:
        for block, value in zip(blocks, previous):
            block.use_matmul_dft = value


def export_encoder(
    encoder: ModalityEncoder,
    path: str | os.PathLike,
    image_size: int,
    opset: int = DEFAULT_OPSET,
    example_batch: int = 2,
) -> Path:
    """Export one ``ModalityEncoder`` (codes only) to ``path`` (see the module docs)."""
    if example_batch < 2:
        raise ValueError("the example batch must have at least 2 images, or the batch size is fixed to 1")
    path = Path(path)
    wrapper = CodesOnly(encoder).eval()
    example = torch.randn(example_batch, encoder.in_channels, image_size, image_size)
    with matmul_dft(encoder), torch.no_grad(), warnings.catch_warnings():
        # harmless: ADF's shifted slices are not constant-folded
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded")
        # intended: the band count check and the spatial sizes (DFT matrices) are constants
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the TorchScript exporter is chosen on purpose (module docs); its deprecation notices are noise here
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        write_atomic(
            path,
            lambda file: torch.onnx.export(
                wrapper,
                (example,),
                file,  # type: ignore[arg-type]  # the TorchScript exporter also writes to a binary file object
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
            ),
        )
    try:
        import onnx
    except ImportError:  # the export itself does not need it; the check is a bonus
        return path
    onnx.checker.check_model(str(path))
    return path


def sidecar(
    config: Config,
    modality: str,
    encoder: ModalityEncoder,
    image_size: int,
    resize: int,
    opset: int,
    precision: str = "fp32",
    quantization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON description written beside ``<modality>.onnx``."""
    channels = encoder.in_channels
    preprocess = Preprocessor(modality, config.data.modality_config(modality), image_size, resize)
    return {
        "format": "fgmd-onnx-encoder",
        "format_version": SIDECAR_VERSION,
        "modality": modality,
        "bits": encoder.bits,
        "input": {"name": INPUT_NAME, "shape": ["batch", channels, image_size, image_size], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", encoder.bits], "dtype": "float32", "range": [-1, 1]},
        "preprocessing": preprocess.spec(),
        "binarization": "bit i = 1 where codes[i] >= 0; packed 8 bits per byte, bit 0 = most significant (np.packbits)",
        "encoder": {"weights_sha256": weights_sha256(encoder), "modality": modality, "bits": encoder.bits},
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=False), torch {torch.__version__}",
        "precision": precision,
        **({"quantization": quantization} if quantization else {}),
    }


@dataclass
class ExportedBranch:
    """One exported branch: its modality, the ONNX file and the JSON sidecar."""

    modality: str
    onnx: Path
    sidecar: Path
    image_size: int
    resize: int
    precision: str = "fp32"


def export_resize(config: Config, image_size: int) -> int:
    """The resize side matching ``image_size`` (the trained resize/crop ratio is kept)."""
    data = config.data
    if image_size == data.image_size:
        return data.resize
    return max(image_size, round(image_size * data.resize / data.image_size))


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    image_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    modalities: Sequence[str] | None = None,
    fmt: str = "onnx",
    precision: str = "fp32",
    quantization: QuantizationOptions | None = None,
    overrides: Sequence[str] = (),
) -> list[ExportedBranch]:
    """Export each branch of ``checkpoint`` to ``out_dir/<modality>.onnx`` (+ ``.json``).

    ``image_size`` defaults to the checkpoint's ``data.image_size``. ``precision`` is one of
    ``PRECISIONS``; for ``"int8"``, ``quantization`` (default ``QuantizationOptions()``) says
    how, and the calibration images are the first images of an even spread over the run's
    training split, read and preprocessed as for evaluation (``calibration_batches``).
    ``overrides`` (``key=value``) adjust the stored config (preprocessing overrides change
    the sidecar).
    """
    from fgmd.models import load_run

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    quantization = quantization or QuantizationOptions()
    model, config, _ = load_run(checkpoint, overrides)
    size = image_size or config.data.image_size
    resize = export_resize(config, size)
    out = Path(out_dir)
    make_folder(out)
    exported = []
    for modality in modalities or model.modalities:
        if modality not in model.modalities:
            raise ValueError(f"the model has modalities {list(model.modalities)}, not {modality!r}")
        encoder = model.encoder(modality)
        onnx_path = out / f"{modality}.onnx"
        details = None
        with tempfile.TemporaryDirectory(dir=out) as work:
            fp32_path = export_encoder(encoder, Path(work) / "fp32.onnx", size, opset)
            if precision == "fp16":
                convert_fp16(fp32_path, onnx_path)
            elif precision == "int8":
                batches = calibration_batches(config, modality, size, resize, quantization)
                details = quantize_int8(fp32_path, onnx_path, batches, quantization, INPUT_NAME)
            else:
                os.replace(fp32_path, onnx_path)
        meta_path = out / f"{modality}.json"
        meta = sidecar(config, modality, encoder, size, resize, opset, precision, details)
        write_json_atomic(meta_path, meta)
        exported.append(ExportedBranch(modality, onnx_path, meta_path, size, resize, precision))
    return exported


def calibration_batches(
    config: Config, modality: str, image_size: int, resize: int, options: QuantizationOptions
) -> Iterator[np.ndarray]:
    """``[B, C, S, S]`` float32 batches of ``options.calibration_images`` training images.

    The images are spread evenly over the training split (``config.data.train_split``; a
    class-sorted split is then covered class by class) and go through the run's
    :class:`~fgmd.data.preprocess.Preprocessor` at the export size (read, band selection,
    radiometry, resize, centre crop, normalisation: the encoder inputs of evaluation, and what
    the sidecar's ``"preprocessing"`` describes).
    """
    from fgmd.data.datasets import build_dataset

    preprocess = Preprocessor(modality, config.data.modality_config(modality), image_size, resize)
    images = build_dataset(config.data, config.data.train_split).images(modality, preprocess)
    if len(images) == 0:
        raise ValueError(
            f"split {config.data.train_split!r} of {config.data.root} has no {modality} images to calibrate on"
        )
    count = min(options.calibration_images, len(images))
    positions = np.linspace(0, len(images) - 1, count).round().astype(int)
    for start in range(0, count, options.batch_size):
        yield torch.stack([images[int(p)]["image"] for p in positions[start : start + options.batch_size]]).numpy()


def write_json_atomic(path: Path, data: dict[str, Any]) -> Path:
    """``data`` as indented JSON at ``path``, written atomically (``fgmd.runtime.files``)."""
    return write_atomic(path, json.dumps(data, indent=1) + "\n")
