"""Fixtures for the deployment tests (index, search, export): a tiny trained checkpoint.

Registered for every test module by ``pytest_plugins`` in conftest.py (module-scoped: each
test module that uses one gets its own); the helpers (``run_cli``, ``image_folder``) are
imported where they are used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from fgmd.cli.main import main as cli_main
from fgmd.config import load_config
from fgmd.data.datasets import build_dataset
from fgmd.data.transforms import build_transforms
from fgmd.models import model_from_config
from fgmd.runtime.checkpoint import load_checkpoint, save_checkpoint
from fgmd.training.trainer import fit


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_dataset, tmp_path_factory):
    """``best.pt`` of a 1-epoch tiny run (32 px, width 0.25, 16 bits, ms 3 bands / pan 1 band).

    After so few steps the BatchNorm running statistics are far from the data's and, in eval
    mode, the codes hardly depend on the image (all images get the same code), which would
    make rankings and parity checks trivially pass. So the statistics are recalibrated on the
    training images (cumulative averages in train mode) before the checkpoint is used.
    """
    run = tmp_path_factory.mktemp("deploy") / "run"
    config = load_config(None, tiny_overrides(tiny_dataset, run, **{"train.epochs": 1, "data.val_fraction": 0}))
    fit(config, progress=False)
    path = run / "best.pt"
    state = load_checkpoint(path)
    model = model_from_config(config)
    model.load_state_dict(state["model"])
    transforms = build_transforms(config.data, train=False)
    split = build_dataset(config.data, "train")
    with torch.no_grad():
        for modality in model.modalities:
            images = split.images(modality, transforms[modality])
            batch = torch.stack([images[i]["image"] for i in range(len(images))])
            encoder = model.encoders[modality]
            for norm in encoder.modules():
                if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                    norm.reset_running_stats()
                    norm.momentum = None
            encoder.train()
            encoder.encode(batch)
            for norm in encoder.modules():
                if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                    norm.momentum = 0.1
    state["model"] = model.state_dict()
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
    return path


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


def image_folder(
    dataset: Path, out: Path, modality: str = "pan", count: int | None = None, nested: bool = False
) -> Path:
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
