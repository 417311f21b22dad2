"""fgmd: FG-MD (Frequency-Guided Mutual Distillation) cross-modal hashing retrieval.

The public API (see README "Python API"):

* :func:`load_config` / :class:`Config` — run configuration
* :func:`fit` — train; :func:`load_model` — a trained model from a checkpoint
* :func:`encode_files` / ``model.encode(images, modality)`` — hash codes
* :func:`evaluate_checkpoint` / :func:`retrieval_metrics` — retrieval metrics
* :class:`Index` / :func:`build_index` / :func:`search_images` — archive indexing and
  cross-modal search (see docs/DEPLOYMENT.md)
* :func:`export_onnx` / :func:`check_onnx` — ONNX export of the encoders and its parity check
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562), so ``import fgmd.cli`` and ``fgmd --help`` do not
# load torch: name -> (module, attribute).
_EXPORTS = {
    "encode_files": ("fgmd.api", "encode_files"),
    "evaluate_checkpoint": ("fgmd.api", "evaluate_checkpoint"),
    "load_model": ("fgmd.api", "load_model"),
    "Config": ("fgmd.config", "Config"),
    "load_config": ("fgmd.config", "load_config"),
    "retrieval_metrics": ("fgmd.evaluation.metrics", "retrieval_metrics"),
    "check_onnx": ("fgmd.export", "check_onnx"),
    "export_onnx": ("fgmd.export", "export_checkpoint"),
    "FGMD": ("fgmd.models", "FGMD"),
    "build_model": ("fgmd.models", "build_model"),
    "model_from_config": ("fgmd.models", "model_from_config"),
    "Index": ("fgmd.retrieval", "Index"),
    "build_index": ("fgmd.retrieval.encode_archive", "build_index"),
    "search_images": ("fgmd.retrieval.image_search", "search_images"),
    "fit": ("fgmd.training.trainer", "fit"),
}

if TYPE_CHECKING:
    from fgmd.api import encode_files, evaluate_checkpoint, load_model
    from fgmd.config import Config, load_config
    from fgmd.evaluation.metrics import retrieval_metrics
    from fgmd.export import check_onnx
    from fgmd.export import export_checkpoint as export_onnx
    from fgmd.models import FGMD, build_model, model_from_config
    from fgmd.retrieval import Index
    from fgmd.retrieval.encode_archive import build_index
    from fgmd.retrieval.image_search import search_images
    from fgmd.training.trainer import fit


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fgmd' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__version__ = "0.1.0"

__all__ = [
    "FGMD",
    "Config",
    "Index",
    "build_index",
    "build_model",
    "check_onnx",
    "encode_files",
    "evaluate_checkpoint",
    "export_onnx",
    "fit",
    "load_config",
    "load_model",
    "model_from_config",
    "retrieval_metrics",
    "search_images",
]
