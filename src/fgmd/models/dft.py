"""Real-matrix 2-D DFT: ``rfft2``/``irfft2`` with ``norm="ortho"`` written as matmuls.

``torch.fft`` operators do not export reliably to ONNX (docs/docs/DESIGN.md §5), so FDFSP can switch
to this path, which uses only ``MatMul``/``Mul``/``Add``/``Sub`` on real tensors. The complex
spectrum is carried as two real tensors ``(re, im)``.

For an input ``x`` of shape ``[..., H, W]`` the half spectrum has ``Wr = W // 2 + 1`` columns:

    X[k1, k2] = 1/sqrt(HW) * sum_{h,w} x[h, w] * exp(-2πi (k1 h / H + k2 w / W))

The inverse follows ``torch.fft.irfft2(..., s=(H, W), norm="ortho")`` exactly, including
how it treats the non-redundant columns: the imaginary parts of the DC column (and of the
Nyquist column when ``W`` is even) are ignored, and the other columns count twice.

The transform matrices are built once per ``(H, W, device, dtype)`` in float64 and cached,
so a forward pass does no matrix construction.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "rfft2_matmul",
    "irfft2_matmul",
    "dft_matrices",
    "dft_kron_matrices",
    "lowpass_matrices",
    "half_spectrum_width",
    "static_size",
]


def half_spectrum_width(width: int) -> int:
    """Number of columns of the one-sided spectrum of a length-``width`` real signal."""
    return width // 2 + 1


@lru_cache(maxsize=64)
def dft_matrices(
    height: int, width: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Cached ortho-normalised DFT matrices for an ``H x W`` real transform.

    Returns ``(ch, sh, cw, sw, icw, isw)``:

    - ``ch, sh``: ``[H, H]``, ``cos``/``sin(2π k h / H) / sqrt(H)`` (symmetric).
    - ``cw, sw``: ``[W, Wr]``, ``cos``/``sin(2π w k / W) / sqrt(W)`` (forward, right-multiplied).
    - ``icw, isw``: ``[Wr, W]``, the one-sided inverse along W: the forward matrices
      transposed, with columns ``0 < k < W/2`` doubled (their conjugate twins are implicit).
    """
    wr = half_spectrum_width(width)
    kh = torch.arange(height, dtype=torch.float64)
    angle_h = 2 * math.pi * torch.outer(kh, kh).remainder(height) / height
    ch = torch.cos(angle_h) / math.sqrt(height)
    sh = torch.sin(angle_h) / math.sqrt(height)

    w = torch.arange(width, dtype=torch.float64)
    k = torch.arange(wr, dtype=torch.float64)
    angle_w = 2 * math.pi * torch.outer(w, k).remainder(width) / width
    cw = torch.cos(angle_w) / math.sqrt(width)
    sw = torch.sin(angle_w) / math.sqrt(width)

    multiplicity = torch.full((wr, 1), 2.0, dtype=torch.float64)
    multiplicity[0] = 1.0
    if width % 2 == 0:
        multiplicity[-1] = 1.0
    icw = multiplicity * cw.T
    isw = multiplicity * sw.T
    ch, sh, cw, sw, icw, isw = (m.to(device=device, dtype=dtype) for m in (ch, sh, cw, sw, icw, isw))
    return ch, sh, cw, sw, icw, isw


def static_size(size) -> tuple[int, int]:
    """``(H, W)`` as Python ints: when traced for ONNX export the sizes become constants, so
    the cached matrices are graph constants instead of being rebuilt inside the graph."""
    return int(size[0]), int(size[1])


def rfft2_matmul(x: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.fft.rfft2(x, norm="ortho")`` as real matmuls.

    Args:
        x: real ``[..., H, W]``.

    Returns:
        ``(re, im)``, each ``[..., H, W // 2 + 1]``.
    """
    height, width = static_size(x.shape[-2:])
    ch, sh, cw, sw, _, _ = dft_matrices(height, width, x.device, x.dtype)
    row_re = x @ cw  # [..., H, Wr]
    row_im = -(x @ sw)
    # column transform: (ch - i sh) @ (row_re + i row_im)
    re = ch @ row_re + sh @ row_im
    im = ch @ row_im - sh @ row_re
    return re, im


def irfft2_matmul(re: Tensor, im: Tensor, s: tuple[int, int]) -> Tensor:
    """``torch.fft.irfft2(torch.complex(re, im), s=s, norm="ortho")`` as real matmuls.

    Args:
        re, im: ``[..., H, W // 2 + 1]``, the one-sided spectrum.
        s: ``(H, W)``, the output size (needed: ``W`` cannot be inferred for odd sizes).

    Returns:
        real ``[..., H, W]``.
    """
    height, width = static_size(s)
    if static_size(re.shape[-2:]) != (height, half_spectrum_width(width)):
        raise ValueError(f"spectrum of shape {tuple(re.shape[-2:])} does not match output size {tuple(s)}")
    ch, sh, _, _, icw, isw = dft_matrices(height, width, re.device, re.dtype)
    # inverse column transform: (ch + i sh) @ (re + i im)
    col_re = ch @ re - sh @ im
    col_im = ch @ im + sh @ re
    # one-sided inverse row transform, real part only
    return col_re @ icw - col_im @ isw


@lru_cache(maxsize=64)
def dft_kron_matrices(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The whole 2-D transform of a small map as one matrix each way (cached).

    Returns ``(forward [H*W, 2n], inverse [2n, H*W])`` with ``n = H * (W // 2 + 1)``:

    - ``x.flatten(-2) @ forward`` is ``[re | im]`` of ``rfft2_matmul(x)``, each flattened;
    - ``[re | im] @ inverse`` is ``irfft2_matmul(re, im, (H, W)).flatten(-2)``.

    One large matmul replaces a dozen tiny batched ones; on maps up to about 16 x 16 this is
    also fewer operations in an exported graph. The matrices hold ``2 (H W)^2`` numbers
    (quadratic in the map size), so use them for small maps only.
    """
    pixels = height * width
    wr = half_spectrum_width(width)
    n = height * wr
    basis = torch.eye(pixels, dtype=torch.float64).view(pixels, height, width)
    re, im = rfft2_matmul(basis)
    forward = torch.cat([re.flatten(1), im.flatten(1)], dim=1)
    spectra = torch.eye(2 * n, dtype=torch.float64)
    inverse = irfft2_matmul(
        spectra[:, :n].reshape(2 * n, height, wr), spectra[:, n:].reshape(2 * n, height, wr), (height, width)
    )
    return forward.to(device=device, dtype=dtype), inverse.flatten(1).to(device=device, dtype=dtype)


@lru_cache(maxsize=64)
def lowpass_matrices(
    height: int, width: int, cutoff: float, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Real matrices ``(Lh [H, H], Lw [W, W])`` of the separable ideal low-pass filter (cached).

    ``Lh @ x @ Lw == irfft2(rfft2(x) * mask, s=(H, W))`` (any norm: they cancel) for the
    mask keeping frequencies with ``|f_y| <= cutoff`` and ``|f_x| <= cutoff`` (cycles per
    pixel). The mask is a product of one factor per axis and symmetric in each frequency,
    so each factor is a real symmetric circulant matrix: two matmuls instead of a forward
    and an inverse 2-D transform.
    """

    def axis(size: int) -> Tensor:
        k = torch.arange(size, dtype=torch.float64)
        keep = (torch.minimum(k, size - k) / size <= cutoff + 1e-9).to(torch.float64)
        eye = torch.eye(size, dtype=torch.float64)
        return torch.fft.ifft(keep[:, None] * torch.fft.fft(eye, dim=0), dim=0).real  # L @ v = ifft(keep * fft(v))

    low_h, low_w = axis(height), axis(width)
    return low_h.to(device=device, dtype=dtype), low_w.T.contiguous().to(device=device, dtype=dtype)
