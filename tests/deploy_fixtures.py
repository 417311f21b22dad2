"""Fixtures for the deployment tests (index, search, export): a tiny trained checkpoint.

Imported by the test modules (``from deploy_fixtures import ...``) rather than living in
conftest.py, so they stay next to the tests that use them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from fgmd.cli.main import main as cli_main
from fgmd.config import load_config
from fgmd.training.checkpoint import load_checkpoint, save_checkpoint
from fgmd.training.trainer import fit


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_dataset, tmp_path_factory):
    """``best.pt`` of a 1-epoch tiny run (32 px, width 0.25, 16 bits, ms 3 bands / pan 1 band)."""
    run = tmp_path_factory.mktemp("deploy") / "run"
    config = load_config(None, tiny_overrides(tiny_dataset, run, **{"train.epochs": 1, "data.val_fraction": 0}))
    fit(config, progress=False)
    return run / "best.pt"


@pytest.fixture(scope="module")
def other_checkpoint(tiny_checkpoint):
    """The same model with slightly different weights in both branches (another encoder)."""
    state = load_checkpoint(tiny_checkpoint)
    for name, tensor in state["model"].items():
        if name.endswith("head.layers.6.bias"):
            tensor.add_(0.01)
    path = tiny_checkpoint.parent / "other.pt"
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
    return path


def image_folder(dataset: Path, out: Path, modality: str = "pan", count: int | None = None, nested: bool = False) -> Path:
    """Copy ``count`` images of ``modality`` from the tiny dataset into ``out`` (optionally nested)."""
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted((dataset / "images" / modality).glob("*.png"))[:count]
    for i, source in enumerate(sources):
        target = out / (f"group{i % 3}" if nested else "") / source.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(source, target)
    return out


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``fgmd ARGS`` in this process: (exit code, stdout, stderr)."""
    code = cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def codes_equal(a, b) -> bool:
    return bool(torch.equal(torch.as_tensor(a), torch.as_tensor(b)))
