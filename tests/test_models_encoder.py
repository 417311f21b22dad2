"""ModalityEncoder: level shapes, switches, identity of FDFSP/ADF at init."""

import pytest
import torch

from fgmd.config import ModelConfig
from fgmd.models import EncoderOutput, ModalityEncoder, count_parameters


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("width,channels", [(1.0, (16, 24, 32, 96, 320)), (0.5, (8, 16, 16, 48, 160))])
def test_level_and_code_shapes(size, width, channels):
    torch.manual_seed(0)
    encoder = ModalityEncoder(ModelConfig(bits=24, width_mult=width), in_channels=3)
    assert encoder.level_channels == channels and encoder.bits == 24
    batch = 2 if size == 64 else 1
    if batch == 1:
        encoder.eval()
    with torch.no_grad():
        output = encoder(torch.randn(batch, 3, size, size))
    assert isinstance(output, EncoderOutput)
    assert output.codes.shape == (batch, 24)
    assert output.codes.abs().max() < 1
    assert len(output.features) == 5
    for level, (feature, channel) in enumerate(zip(output.features, channels)):
        side = -(-size // 2 ** (level + 1))
        assert feature.shape == (batch, channel, side, side)


def test_odd_input_size():
    encoder = ModalityEncoder(ModelConfig(), in_channels=3).eval()
    with torch.no_grad():
        output = encoder(torch.randn(1, 3, 100, 90))  # L4 is 4x3, L2 13x12
    assert [tuple(f.shape[-2:]) for f in output.features] == [(50, 45), (25, 23), (13, 12), (7, 6), (4, 3)]


def test_switches_remove_modules():
    counts = {}
    for fdfsp, adf in [(False, False), (True, False), (False, True), (True, True)]:
        encoder = ModalityEncoder(ModelConfig(fdfsp=fdfsp, adf=adf), in_channels=3)
        assert (encoder.fdfsp is not None) == fdfsp and (encoder.adf is not None) == adf
        counts[fdfsp, adf] = count_parameters(encoder)
    assert counts[False, False] < counts[True, False] < counts[True, True]
    assert counts[False, False] < counts[False, True] < counts[True, True]
    fdfsp_params = counts[True, False] - counts[False, False]
    assert 200_000 < fdfsp_params < 320_000


def test_full_encoder_equals_baseline_at_init():
    torch.manual_seed(0)
    baseline = ModalityEncoder(ModelConfig(fdfsp=False, adf=False), in_channels=3)
    full = ModalityEncoder(ModelConfig(), in_channels=3)
    # give the BN running statistics non-trivial values so that the copy matters
    baseline.train()
    with torch.no_grad():
        baseline(torch.randn(4, 3, 64, 64))
    result = full.load_state_dict(baseline.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith(("fdfsp.", "adf.")) for k in result.missing_keys)
    baseline.eval()
    full.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = baseline(x)
        output = full(x)
        torch.testing.assert_close(output.codes, expected.codes, atol=1e-5, rtol=1e-4)
        for level in range(5):
            torch.testing.assert_close(output.features[level], expected.features[level], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(full.encode(x), expected.codes, atol=1e-5, rtol=1e-4)
        # and the added modules change the result once trained
        torch.nn.init.normal_(full.fdfsp["3"].recover.weight, std=0.5)
        assert (full(x).features[3] - expected.features[3]).abs().max() > 1e-2


def test_one_band_input_modes():
    x = torch.randn(1, 1, 64, 64)
    for stem in ("adapt", "replicate"):
        encoder = ModalityEncoder(ModelConfig(stem=stem), in_channels=1).eval()
        with torch.no_grad():
            assert encoder.encode(x).shape == (1, 32)
        with pytest.raises(ValueError, match="1-band"):
            encoder.encode(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="only handles 1-band"):
        ModalityEncoder(ModelConfig(stem="replicate"), in_channels=4)


def test_gradients_flow_to_all_parameters_after_perturbing_zero_inits():
    encoder = ModalityEncoder(ModelConfig(), in_channels=3)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if not param.any():  # zero-initialised FDFSP/ADF parts and residual BN scales
                param.normal_(std=0.05)
    output = encoder(torch.randn(2, 3, 64, 64))
    (output.codes.sum() + sum(f.square().mean() for f in output.features)).backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_residual_blocks_start_as_identity_when_zero_initialised():
    trunk = ModalityEncoder(ModelConfig(), in_channels=3).trunk
    residual = [b for b in trunk.features if getattr(b, "use_res_connect", False)]
    assert residual and all(not b.conv[-1].weight.any() for b in residual)
    plain = ModalityEncoder(ModelConfig(zero_init_residual=False), in_channels=3).trunk
    assert all(b.conv[-1].weight.all() for b in plain.features if getattr(b, "use_res_connect", False))


@pytest.mark.parametrize("levels", [[1, 2], [4], [1, 2, 3, 4]])
def test_fdfsp_levels_place_blocks_and_stay_the_identity_at_init(levels):
    torch.manual_seed(0)
    baseline = ModalityEncoder(ModelConfig(fdfsp=False, adf=False), in_channels=3)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so deep maps are not near zero
        baseline(torch.randn(4, 3, 64, 64))
    baseline.eval()
    variant = ModalityEncoder(ModelConfig(fdfsp_levels=levels, adf_gate_features=True), in_channels=3).eval()
    assert variant.fdfsp is not None and sorted(int(k) for k in variant.fdfsp) == sorted(levels)
    channels = variant.level_channels
    for level in levels:  # each block sized for its own level
        assert variant.fdfsp[str(level)].channels == channels[level]
    variant.load_state_dict(baseline.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = baseline(x)
        torch.testing.assert_close(variant(x).codes, expected.codes, atol=1e-5, rtol=1e-4)
        first = min(levels)
        torch.nn.init.normal_(variant.fdfsp[str(first)].recover.weight, std=0.5)
        changed = variant(x).features
    assert (changed[first] - expected.features[first]).abs().max() > 1e-2
    assert torch.equal(changed[first - 1], expected.features[first - 1])  # levels before it untouched
