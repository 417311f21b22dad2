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
