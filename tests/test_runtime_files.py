"""Files fgmd writes through temporary files get an ordinary file's mode (umask respected)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from fgmd.retrieval import Index
from fgmd.runtime.checkpoint import load_checkpoint, save_checkpoint
from fgmd.runtime.files import new_file_mode


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    old = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_and_indexes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert new_file_mode() == expected
    path = save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.ones(2)}})
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    codes = np.random.default_rng(0).standard_normal((3, 16))
    index = Index(16, "pan", {"bits": 16}, codes, ["a", "b", "c"]).save(tmp_path / "x.fgidx")
    assert stat.S_IMODE(index.stat().st_mode) == expected
    assert os.umask(mask) == mask  # reading the mode left the umask as it was
