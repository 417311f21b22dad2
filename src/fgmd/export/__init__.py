"""Deployment exports: ONNX files of the encoders (``onnx``) and their parity check (``parity``)."""

from .onnx import EXPORT_FORMATS, ExportedBranch, export_checkpoint, export_encoder, matmul_dft
from .parity import ParityReport, check_onnx

__all__ = [
    "EXPORT_FORMATS",
    "ExportedBranch",
    "ParityReport",
    "check_onnx",
    "export_checkpoint",
    "export_encoder",
    "matmul_dft",
]
