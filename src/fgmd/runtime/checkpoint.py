"""Checkpoints: plain dicts of tensors and plain types, written atomically, read with ``weights_only=True``.

Two kinds live in a run directory:

* ``last.pt`` — everything needed to resume: model, objective, optimizer, scheduler,
  code bank, epoch counter, best score, plus the run config as a plain dict.
* ``best.pt`` — the selected model for retrieval: model weights, config, class names,
  the epoch and the validation metrics it was selected on.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from fgmd.runtime.files import make_folder, write_atomic

FORMAT = "fgmd-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not an fgmd checkpoint."""


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tagged with format and version) to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed
    over ``path``: a crash leaves either the old file or the new one, never half of one. The
    file gets the mode of an ordinary new file (``0o644`` under umask 022).
    """
    path = Path(path)
    make_folder(path.parent)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    return write_atomic(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an fgmd checkpoint with ``torch.load(weights_only=True)`` and check its tag."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    except pickle.UnpicklingError:  # the weights-only unpickler met something else (torch suggests an unsafe load)
        raise CheckpointError(
            f"{path}: not a trusted fgmd checkpoint: it is not made of tensors and plain values only "
            "(damaged, or it holds Python objects); refused without running anything in it"
        ) from None
    except Exception as error:  # torch raises several types for damaged files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({first.split('. ')[0][:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fgmd checkpoint (no '{FORMAT}' tag)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})"
        )
    return payload
