"""Multi-process runs with torchrun (2 processes, gloo on CPU)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from fgmd.config import load_config
from fgmd.runtime.checkpoint import load_checkpoint
from fgmd.training.mining import mining_digest
from fgmd.training.trainer import Trainer

SRC = str(Path(__file__).resolve().parents[1] / "src")


def torchrun(nproc, *args):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "fgmd",
        *args,
    ]  # --standalone: a local rendezvous on a free port
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def two_process_run(tiny_dataset, tmp_path_factory):
    """A 2-process run of 1 epoch, a copy of its state, then the same run resumed to 2 epochs."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    overrides = tiny_overrides(tiny_dataset, run, **{"train.epochs": 1, "train.batch_size": 8})
    out = torchrun(2, "train", "--quiet", *overrides)
    assert out.returncode == 0, out.stderr[-3000:]
    shutil.copy(run / "last.pt", run.parent / "after_epoch_1.pt")
    out = torchrun(2, "train", "--quiet", "--resume", *overrides, "train.epochs=2")
    assert out.returncode == 0, out.stderr[-3000:]
    return run, overrides


def test_two_process_training_completes_and_checkpoints_load_in_one_process(two_process_run):
    run, _ = two_process_run
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    assert not any(key.startswith("module.") for key in state["model"])  # the unwrapped model was saved


def test_mining_is_global_and_equals_a_single_process_on_the_same_codes(two_process_run):
    run, overrides = two_process_run
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # Single process, same config, state (incl. the merged code bank) after epoch 1:
    config = load_config(None, [*overrides, "train.epochs=2", f"out_dir={run.parent / 'single'}"])
    trainer = Trainer(config, progress=False)
    state = load_checkpoint(run.parent / "after_epoch_1.pt")
    state["config"] = config.to_dict()
    trainer.load_state(state)
    positives, negatives = trainer.mine(1)
    single = mining_digest({**positives, **{f"{m}_neg": n for m, n in negatives.items()}})
    assert log[1]["mining_digest"] == single


def test_evaluation_is_identical_in_one_and_two_processes(two_process_run, tmp_path):
    run, _ = two_process_run
    env = {**os.environ, "PYTHONPATH": SRC}
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "fgmd",
            "eval",
            "--quiet",
            "--checkpoint",
            str(run / "best.pt"),
            "--out",
            str(tmp_path / "one.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(2, "eval", "--quiet", "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "two.json"))
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert a["directions"] == b["directions"]
    assert a["mean_map"] == b["mean_map"]
