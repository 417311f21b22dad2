"""Shared fixtures: a tiny generated dataset and a tiny, fast training config."""

from __future__ import annotations

import os

import pytest
import torch

# The tiny models of the tests run fastest on one thread, and on a busy shared CPU a second
# OpenMP thread can make them 100x slower (spin-waiting for a core). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from fgmd.config import load_config
from fgmd.data.synthetic import generate_demo_dataset

# The tiny trained checkpoints of the deployment tests (index, search, export, serve).
pytest_plugins = ["deploy_fixtures"]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small demo-layout dataset (generated once per test session)."""
    return generate_demo_dataset(tmp_path_factory.mktemp("data") / "tiny", n_per_class=16, seed=0)


@pytest.fixture(scope="session")
def micro_dataset(tmp_path_factory):
    """12 training pairs (2 per class): small enough to learn in seconds."""
    return generate_demo_dataset(tmp_path_factory.mktemp("micro") / "data", n_per_class=4, seed=0)


def tiny_overrides(root, out_dir, **extra):
    """Overrides for a run that trains in a few seconds on the tiny dataset."""
    values = {
        "data.root": str(root),
        "out_dir": str(out_dir),
        "data.modality": "{ms: {channels: 3}, pan: {channels: 1}}",
        "data.image_size": 32,
        "data.resize": 36,
        "data.cache_images": "true",
        "data.val_fraction": 0.25,
        "model.bits": 16,
        "model.width_mult": 0.25,
        "model.head_hidden": 64,
        "train.epochs": 2,
        "train.batch_size": 16,
        "train.lr": 1e-3,
        "eval.map_at_k": "[20]",
        "eval.precision_at": "[5]",
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture
def tiny_config(tiny_dataset, tmp_path):
    """Factory: a tiny run config writing into a fresh folder, with optional overrides."""

    def make(**extra):
        out_dir = extra.pop("out_dir", tmp_path / "run")
        return load_config(None, tiny_overrides(tiny_dataset, out_dir, **extra))

    return make
