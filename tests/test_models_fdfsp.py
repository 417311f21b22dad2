"""FDFSP: identity at init, FFT and matmul paths agree, learnable parts really act."""

import pytest
import torch
from torch import nn

from fgmd.models import FDFSP
from fgmd.models.fdfsp import band_masks


def randomise(module: FDFSP, seed: int = 0) -> None:
    """Give the zero-initialised parameters random values (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        zero_init = (module.gain_mlp[-1].weight, module.gain_mlp[-1].bias, module.kernel, module.recover.weight)
        for param in zero_init:
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))


def inputs(channels, in_channels, size, in_size, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, channels, size[0], size[1], generator=gen),
        torch.randn(batch, in_channels, in_size[0], in_size[1], generator=gen),
    )


CASES = [
    ((7, 7), (14, 14)),
    ((7, 7), (13, 13)),
    ((5, 8), (10, 15)),
    ((2, 2), (4, 4)),
    ((14, 14), (28, 28)),
    ((17, 16), (33, 32)),  # above KRONECKER_MAX_PIXELS: the separable matmul DFT
]


@pytest.mark.parametrize("size,in_size", CASES)
def test_identity_at_init(size, in_size):
    module = FDFSP(16, 8)
    x, stage_input = inputs(16, 8, size, in_size)
    for matmul in (False, True):
        module.use_matmul_dft = matmul
        torch.testing.assert_close(module(x, stage_input), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size,in_size", CASES)
def test_matmul_path_equals_fft_path_after_randomising(size, in_size):
    module = FDFSP(16, 8, kernel_size=5)
    randomise(module)
    x, stage_input = inputs(16, 8, size, in_size)
    reference = module(x, stage_input)
    assert (reference - x).abs().max() > 1e-2  # not the identity any more
    module.use_matmul_dft = True
    torch.testing.assert_close(module(x, stage_input), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size,in_size", [((7, 7), (13, 13)), ((5, 8), (10, 15)), ((14, 14), (28, 28))])
def test_one_matrix_separable_and_fft_spectral_filters_agree(size, in_size, monkeypatch):
    from fgmd.models import fdfsp

    module = FDFSP(16, 8, kernel_size=5)
    randomise(module)
    x, stage_input = inputs(16, 8, size, in_size)
    monkeypatch.setattr(fdfsp, "EAGER_KRONECKER_MAX_PIXELS", 0)
    reference = module(x, stage_input)  # torch.fft
    module.use_matmul_dft = True
    assert size[0] * size[1] <= fdfsp.KRONECKER_MAX_PIXELS
    torch.testing.assert_close(module(x, stage_input), reference, atol=1e-5, rtol=1e-5)  # one-matrix DFT
    monkeypatch.setattr(fdfsp, "KRONECKER_MAX_PIXELS", 0)
    torch.testing.assert_close(module(x, stage_input), reference, atol=1e-5, rtol=1e-5)  # separable matmul DFT


def test_gradients_reach_every_parameter_in_both_paths():
    for matmul in (False, True):
        module = FDFSP(16, 8)
        randomise(module)
        module.use_matmul_dft = matmul
        x, stage_input = inputs(16, 8, (7, 7), (13, 13))
        x.requires_grad_(True)
        module(x, stage_input).square().sum().backward()
        for name, param in module.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert x.grad.abs().sum() > 0


def test_static_filter_is_circular_convolution():
    module = FDFSP(4, 2, kernel_size=7)
    with torch.no_grad():
        module.kernel[:, 3 + 1, 3 + 2] = 1.0  # tap at offset (dy, dx) = (1, 2)
    for size in [(9, 10), (2, 2)]:  # (2, 2): the kernel wraps around the small grid
        x, stage_input = inputs(4, 2, size, (2 * size[0], 2 * size[1]))
        expected = x + torch.roll(x, shifts=(1, 2), dims=(-2, -1))
        torch.testing.assert_close(module(x, stage_input), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(7, 7), (5, 8), (1, 1), (28, 28)])
def test_band_masks_partition_the_spectrum(size):
    masks, weights = band_masks(*size, torch.device("cpu"))
    assert masks.shape == (3, size[0] * (size[1] // 2 + 1))
    torch.testing.assert_close(masks.sum(0), torch.ones(masks.shape[1]))
    assert masks.min() >= 0
    assert masks[0, 0] == 1  # DC is purely low band
    nonempty = masks.sum(1) > 0
    torch.testing.assert_close(weights.sum(1)[nonempty], torch.ones(int(nonempty.sum())))


def test_recovery_uses_only_out_of_band_input():
    module = FDFSP(8, 4)
    randomise(module)
    x = torch.zeros(1, 8, 8, 8)
    # a stage input made of representable (low) frequencies only contributes nothing
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    low = torch.cos(2 * torch.pi * (2 * yy + 3 * xx) / 16).expand(1, 4, 16, 16)
    torch.testing.assert_close(module._recovery(low, x.shape[-2:]), torch.zeros_like(x), atol=1e-5, rtol=0)
    high = torch.cos(2 * torch.pi * (7 * yy) / 16).expand(1, 4, 16, 16)
    assert module._recovery(high, x.shape[-2:]).abs().max() > 1e-2


def test_recovery_conv_is_pixel_unshuffle_then_1x1():
    module = FDFSP(8, 4)
    randomise(module)
    high = torch.randn(2, 4, 14, 14)
    unshuffled = nn.PixelUnshuffle(2)(high)
    pointwise = module.recover.weight.reshape(8, 16, 1, 1)
    expected = nn.functional.conv2d(unshuffled, pointwise)
    torch.testing.assert_close(module.recover(high), expected, atol=1e-5, rtol=1e-5)


def test_gains_depend_on_content():
    module = FDFSP(8, 4)
    randomise(module)
    smooth = torch.ones(1, 8, 8, 8) + 0.01 * torch.randn(1, 8, 8, 8)
    noisy = torch.randn(1, 8, 8, 8)
    spectrum = torch.fft.rfft2(torch.cat([smooth, noisy]), norm="ortho")
    _, weights = band_masks(8, 8, torch.device("cpu"))
    energy = spectrum.abs().square().flatten(2) @ weights.T
    band_filter = module._band_filter(energy, 8, 8)
    assert (band_filter[0] - band_filter[1]).abs().max() > 1e-3
    assert band_filter.min() > 0 and band_filter.max() < 2


def test_spectral_block_runs_in_float32_under_autocast():
    module = FDFSP(8, 4)
    randomise(module)
    x, stage_input = inputs(8, 4, (7, 7), (13, 13))
    expected = module(x, stage_input)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        result = module(x.bfloat16(), stage_input.bfloat16())
    assert result.dtype == torch.bfloat16
    torch.testing.assert_close(result.float(), expected, atol=0.1, rtol=0.05)


def test_rejects_even_kernel_and_mismatched_sizes():
    with pytest.raises(ValueError, match="odd"):
        FDFSP(8, 4, kernel_size=6)
    x, stage_input = inputs(8, 4, (7, 7), (16, 16))
    with pytest.raises(ValueError, match="does not halve"):
        FDFSP(8, 4)(x, stage_input)


@pytest.mark.filterwarnings("ignore")
def test_matmul_path_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    module = FDFSP(8, 4).eval()
    randomise(module)
    module.use_matmul_dft = True
    x, stage_input = inputs(8, 4, (7, 7), (13, 13))
    path = tmp_path / "fdfsp.onnx"
    torch.onnx.export(module, (x, stage_input), str(path), dynamo=False, input_names=["x", "s"])
    module.eval()  # the exporter restores the previous mode; keep eval for the reference
    session = ort.InferenceSession(str(path))
    (result,) = session.run(None, {"x": x.numpy(), "s": stage_input.numpy()})
    expected = module(x, stage_input).detach()
    torch.testing.assert_close(torch.from_numpy(result), expected, atol=1e-5, rtol=1e-5)


def test_inference_kernel_spectrum_cache_follows_the_weights():
    module = FDFSP(8, 4, kernel_size=5)
    randomise(module)
    x, stage_input = inputs(8, 4, (7, 7), (14, 14))
    with torch.no_grad():
        first = module(x, stage_input)
        module.kernel.mul_(2.0)  # an optimiser-like in-place update
        second = module(x, stage_input)
    torch.testing.assert_close(second, module(x, stage_input).detach())  # autograd path: no cache
    assert (second - first).abs().max() > 1e-4
    other = FDFSP(8, 4, kernel_size=5)
    module.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(module(x, stage_input), other(x, stage_input))
