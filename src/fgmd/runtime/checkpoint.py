"""Checkpoints: plain dicts of tensors and plain types, written atomically, read with ``weights_only=True``.

Two kinds live in a run directory:

* ``last.pt`` — everything needed to resume: model, objective, optimizer, scheduler,
  code bank, epoch counter, best score, plus the run config as a plain dict.
* ``best.pt`` — the selected model for retrieval: model weights, config, class names,
  the epoch and the validation metrics it was selected on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .files import new_file_mode

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
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would hide the run from the rest of a team
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an fgmd checkpoint with ``torch.load(weights_only=True)`` and check its tag."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fgmd checkpoint (no '{FORMAT}' tag)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})"
        )
    return payload
