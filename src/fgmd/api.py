"""The Python API for people who script; the command line is a thin layer over these functions.

import fgmd
config = fgmd.load_config("configs/eurosat.yaml", ["model.bits=64"])
result = fgmd.fit(config)                                   # trains, writes runs/...
model, config = fgmd.load_model(result.run_dir / "best.pt")
codes = fgmd.encode_files(model, config, ["a.png", "b.png"], "pan")   # [2, K] in (-1, 1)
metrics = fgmd.evaluate_checkpoint(result.run_dir / "best.pt")          # both directions
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from fgmd.config import Config
from fgmd.data.datasets import build_dataset
from fgmd.data.preprocess import build_preprocessor
from fgmd.evaluation.evaluate import evaluate_model
from fgmd.models import FGMD, load_run
from fgmd.runtime.distributed import init_distributed
from fgmd.runtime.files import write_atomic
from fgmd.runtime.run_log import EPOCHS_FROM, checkpoint_epoch


def load_model(checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[FGMD, Config]:
    """The model stored in ``checkpoint`` (``best.pt`` or ``last.pt``), in eval mode, and its config."""
    model, config, _ = load_run(checkpoint, device=device)
    return model, config


@torch.no_grad()
def encode_files(
    model: FGMD, config: Config, paths: Sequence[str | Path], modality: str, batch_size: int = 64
) -> torch.Tensor:
    """Codes ``[N, K]`` (tanh outputs; ``sign`` gives the hash bits) of image files of ``modality``.

    Images go through the modality's :class:`~fgmd.data.preprocess.Preprocessor` (bands,
    scaling, invert, equalize, resize, crop, normalisation), as in evaluation and indexing.
    """
    preprocess = build_preprocessor(config.data, modality)
    device = next(model.parameters()).device
    model.eval()
    codes = []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([preprocess(p) for p in paths[start : start + batch_size]])
        codes.append(model.encode(batch.to(device), modality).float().cpu())
    return torch.cat(codes) if codes else torch.empty(0, config.model.bits)


def evaluate_checkpoint(
    checkpoint: str | Path,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Cross-modal retrieval metrics of a checkpoint on its config's query and database splits.

    ``overrides`` (``key=value``) adjust the stored config, e.g. ``data.root=/new/place`` or
    ``eval.map_at_r=86``. The metrics are written to ``out`` (default: ``metrics.json`` beside
    a ``best.pt``, ``metrics_<name>.json`` beside any other checkpoint) and returned. Under ``torchrun`` the images are encoded in shards,
    one per process, gathered without padding; rank 0 writes the file.
    """
    checkpoint = Path(checkpoint)
    model, config, state = load_run(checkpoint, overrides)
    context, device = init_distributed(config.train.device)
    model.to(device)
    data = config.data
    inputs = {m: build_preprocessor(data, m) for m in data.modalities}
    query_split = build_dataset(data, data.query_split)
    db_split = query_split if data.database_split == data.query_split else build_dataset(data, data.database_split)
    queries = {m: query_split.images(m, inputs[m]) for m in data.modalities}
    database = queries if db_split is query_split else {m: db_split.images(m, inputs[m]) for m in data.modalities}
    metrics = evaluate_model(model, queries, database, config.eval, device, data.num_workers, progress, context)
    metrics.update(
        {
            "checkpoint": str(checkpoint),
            "epoch": checkpoint_epoch(state),
            "epochs_from": EPOCHS_FROM,
            "selected_on": state.get("selected_on", "last"),
            "query_split": data.query_split,
            "database_split": data.database_split,
            "num_queries": {m: len(s) for m, s in queries.items()},
            "num_database": {m: len(s) for m, s in database.items()},
        }
    )
    if out is None:  # metrics.json belongs to best.pt; other checkpoints get their own file
        name = "metrics.json" if checkpoint.name == "best.pt" else f"metrics_{checkpoint.stem}.json"
        out = checkpoint.parent / name
    out = Path(out)
    if context.is_main:
        write_atomic(out, json.dumps(metrics, indent=2))
    return metrics
