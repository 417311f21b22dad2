"""build_model: two branches from one initial encoder; FGMD forward/encode."""

import pytest
import torch

from fgmd.config import ModelConfig
from fgmd.models import FGMD, build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(bits=16), {"ms": 4, "pan": 1})


def test_branches_start_identical_except_the_stem(model):
    assert isinstance(model, FGMD)
    assert model.modalities == ("ms", "pan")
    assert model.level_channels == (16, 24, 32, 96, 320)
    assert model.bits == 16
    ms = model.encoders["ms"].state_dict()
    pan = model.encoders["pan"].state_dict()
    assert ms.keys() == pan.keys()
    stem = "trunk.features.0.0.weight"
    assert ms[stem].shape == (32, 4, 3, 3) and pan[stem].shape == (32, 1, 3, 3)
    # both stems derive from the same RGB filters: equal sums over bands
    torch.testing.assert_close(ms[stem].sum(1), pan[stem].sum(1), atol=1e-6, rtol=1e-5)
    for key in ms:
        if key != stem:
            assert torch.equal(ms[key], pan[key]), key
    # weights are not shared
    ms_params = {id(p) for p in model.encoders["ms"].parameters()}
    assert not ms_params & {id(p) for p in model.encoders["pan"].parameters()}


def test_forward_and_encode(model):
    model.train()
    images = {"ms": torch.randn(2, 4, 64, 64), "pan": torch.randn(2, 1, 64, 64)}
    outputs = model(images)
    assert set(outputs) == {"ms", "pan"}
    for output in outputs.values():
        assert output.codes.shape == (2, 16) and len(output.features) == 5
    model.eval()
    with torch.no_grad():
        codes = model.encode(torch.randn(1, 1, 64, 64), "pan")
    assert codes.shape == (1, 16)
    with pytest.raises(KeyError, match="unknown modality"):
        model.encode(torch.randn(1, 3, 64, 64), "rgb")


def test_rejects_other_than_two_modalities():
    with pytest.raises(ValueError, match="exactly two"):
        build_model(ModelConfig(), {"ms": 4})
