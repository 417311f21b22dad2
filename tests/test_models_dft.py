"""The matmul DFT equals torch.fft (norm="ortho"), odd sizes included."""

import pytest
import torch

from fgmd.models.dft import dft_kron_matrices, irfft2_matmul, lowpass_matrices, rfft2_matmul

SIZES = [(7, 7), (5, 8), (8, 5), (28, 28), (1, 1), (2, 3)]


@pytest.mark.parametrize("size", SIZES)
def test_rfft2_matches_torch(size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    re, im = rfft2_matmul(x)
    expected = torch.fft.rfft2(x, norm="ortho")
    assert re.shape == im.shape == expected.shape
    torch.testing.assert_close(re, expected.real, atol=1e-5, rtol=0)
    torch.testing.assert_close(im, expected.imag, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_irfft2_matches_torch_on_arbitrary_spectra(size):
    # not Hermitian-consistent on purpose: both must drop the same redundant parts
    gen = torch.Generator().manual_seed(1)
    spectrum = torch.randn(2, 3, size[0], size[1] // 2 + 1, dtype=torch.complex64, generator=gen)
    expected = torch.fft.irfft2(spectrum, s=size, norm="ortho")
    result = irfft2_matmul(spectrum.real, spectrum.imag, size)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)


def test_round_trip_and_shape_check():
    x = torch.randn(4, 7, 7)
    torch.testing.assert_close(irfft2_matmul(*rfft2_matmul(x), (7, 7)), x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="does not match"):
        irfft2_matmul(*rfft2_matmul(x), (7, 8))


def test_gradients_match_torch():
    x = torch.randn(2, 5, 8, requires_grad=True)
    re, im = rfft2_matmul(x)
    (re.square().sum() + (3 * im).sum()).backward()
    grad = x.grad.clone()
    x.grad = None
    spectrum = torch.fft.rfft2(x, norm="ortho")
    (spectrum.real.square().sum() + (3 * spectrum.imag).sum()).backward()
    torch.testing.assert_close(grad, x.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_one_matrix_dft_equals_the_separable_one(size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    forward, inverse = dft_kron_matrices(*size, torch.device("cpu"), torch.float32)
    re, im = rfft2_matmul(x)
    spectrum = x.flatten(-2) @ forward
    torch.testing.assert_close(spectrum, torch.cat([re.flatten(-2), im.flatten(-2)], -1), atol=1e-5, rtol=0)
    gen = torch.Generator().manual_seed(3)
    re, im = (torch.randn(2, 3, size[0], size[1] // 2 + 1, generator=gen) for _ in range(2))
    expected = irfft2_matmul(re, im, size)
    result = (torch.cat([re.flatten(-2), im.flatten(-2)], -1) @ inverse).unflatten(-1, size)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", SIZES + [(13, 13), (10, 15), (56, 56)])
def test_lowpass_matrices_equal_the_masked_transform(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    low_h, low_w = lowpass_matrices(*size, 0.25, torch.device("cpu"), torch.float64)
    ky = torch.arange(size[0], dtype=torch.float64)
    fy = (torch.minimum(ky, size[0] - ky) / size[0])[:, None]
    fx = (torch.arange(size[1] // 2 + 1, dtype=torch.float64) / size[1])[None, :]
    mask = ((fy <= 0.25 + 1e-9) & (fx <= 0.25 + 1e-9)).to(torch.float64)
    expected = torch.fft.irfft2(torch.fft.rfft2(x) * mask, s=size)
    torch.testing.assert_close(low_h @ x @ low_w, expected, atol=1e-10, rtol=0)
