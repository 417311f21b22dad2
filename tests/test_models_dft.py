"""The matmul DFT equals torch.fft (norm="ortho"), odd sizes included."""

import pytest
import torch

from fgmd.models.dft import irfft2_matmul, rfft2_matmul

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
