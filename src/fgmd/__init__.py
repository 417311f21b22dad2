"""fgmd: FG-MD (Frequency-Guided Mutual Distillation) cross-modal hashing retrieval.

The public API (see README "Python API"):

* :func:`load_config` / :class:`Config` — run configuration
* :func:`fit` — train; :func:`load_model` — a trained model from a checkpoint
* :func:`encode_files` / ``model.encode(images, modality)`` — hash codes
* :func:`evaluate_checkpoint` / :func:`retrieval_metrics` — retrieval metrics
"""

from fgmd.api import encode_files, evaluate_checkpoint, load_model
from fgmd.config import Config, load_config
from fgmd.evaluation.metrics import retrieval_metrics
from fgmd.models import FGMD, build_model, model_from_config
from fgmd.training.trainer import fit

__version__ = "0.1.0"

__all__ = [
    "FGMD",
    "Config",
    "build_model",
    "encode_files",
    "evaluate_checkpoint",
    "fit",
    "load_config",
    "load_model",
    "model_from_config",
    "retrieval_metrics",
]
