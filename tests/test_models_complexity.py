"""Parameter and MAC counting."""

import math

import torch
from torch import nn
from torchvision.models import mobilenet_v2

from fgmd.config import ModelConfig
from fgmd.models import build_model, count_macs, count_parameters, model_summary


def test_mobilenet_v2_macs_at_224():
    macs = count_macs(mobilenet_v2().eval(), torch.zeros(1, 3, 224, 224))
    assert abs(macs - 300e6) / 300e6 < 0.05


def test_count_parameters_and_linear_macs():
    layer = nn.Linear(10, 20)
    assert count_parameters(layer) == 220
    assert count_macs(layer, torch.zeros(3, 10)) == 3 * 10 * 20


def test_ffts_are_counted():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho"), s=x.shape[-2:], norm="ortho")

    macs = count_macs(Spectral(), torch.zeros(2, 4, 16, 16))
    # two real transforms of 8 maps of 256 points, 2.5 N log2 N FLOPs each
    assert macs == 2 * 8 * 2.5 * 256 * math.log2(256) / 2


def test_model_summary_full_vs_baseline():
    summaries = {}
    for name, config in {"baseline": ModelConfig(fdfsp=False, adf=False), "full": ModelConfig()}.items():
        model = build_model(config, {"rgb": 3, "ir": 1})
        model.train()
        summaries[name] = model_summary(model, image_size=64)
        assert model.training  # the mode is restored
    full, baseline = summaries["full"], summaries["baseline"]
    assert full["image_size"] == 64
    assert set(full["branches"]) == {"rgb", "ir"}
    rgb = full["branches"]["rgb"]
    assert rgb["in_channels"] == 3 and rgb["params"] == sum(rgb["parts"].values())
    assert full["total_params"] == sum(b["params"] for b in full["branches"].values())
    assert baseline["branches"]["rgb"]["parts"]["fdfsp"] == 0
    for branch in ("rgb", "ir"):
        assert full["branches"][branch]["params"] > baseline["branches"][branch]["params"]
        assert full["branches"][branch]["macs"] > baseline["branches"][branch]["macs"]
