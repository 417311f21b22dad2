"""FDFSP: Frequency-Domain Full-Spectrum Perceiver (docs/DESIGN.md §2).

Placed after a stride-2 trunk stage. With ``X̂ = rfft2(x, norm="ortho")`` it computes

    y = irfft2((Σ_k g_k M_k + K̂) ⊙ X̂, s=(H, W)) + conv1x1(unshuffle(highpass(stage_input)))

- ``M_k`` (k = low, mid, high): fixed soft radial bands on the normalised radius
  ``r = min(1, |f| / 0.5)`` (``f`` in cycles per pixel), triangular hats centred on
  r = 0, 0.5, 1 that sum to one at every frequency.
- ``g_k``: per-image, per-channel gains in (0, 2) = ``2 sigmoid(MLP(log band energies))``,
  the MLP's last layer zero-initialised, so ``g = 1`` at init and ``Σ g_k M_k = 1``.
- ``K̂``: a static global filter, stored as a real ``k x k`` spatial kernel per channel
  (zero init) and transformed to the ``H x W`` grid by a DFT (wrapping circularly when
  the map is smaller than the kernel). Being the spectrum of a real kernel it is Hermitian,
  so the product stays the spectrum of a real map; in space it is the circular
  convolution ``y[n] += Σ_d w[d] x[n - d]`` with offsets ``d`` in ``[-k//2, k//2]``.
- Out-of-band recovery: the stage input, high-passed to the frequencies the output grid
  cannot represent (|f| > 1/4 cycle per input pixel on either axis), zero-padded to even
  size, ``PixelUnshuffle(2)`` and a zero-initialised 1x1 convolution to ``C`` channels
  (computed as the equivalent 2x2 stride-2 convolution).

At initialisation the block is the identity (up to float rounding). The spectral work runs
in float32 even under autocast (half-precision FFTs need power-of-two sizes). Setting
``use_matmul_dft = True`` replaces ``torch.fft`` by the real-matmul DFT of :mod:`.dft`
(ONNX-exportable, same output).

How each transform is computed (all equal up to float rounding; chosen for speed, measured
on CPU with benchmarks/bench_encoder.py):

- The recovery high-pass mask is a product of one low-pass factor per axis, so the high band
  is ``x - Lh x Lw`` with two small real matrices (``dft.lowpass_matrices``) in both paths:
  two matmuls instead of a forward and an inverse 2-D transform.
- The spectral filter on small maps (at most ``KRONECKER_MAX_PIXELS`` pixels on the matmul
  path, ``EAGER_KRONECKER_MAX_PIXELS`` on the ``torch.fft`` path) uses the one-matrix DFT
  (``dft.dft_kron_matrices``): one matmul in, one out. Larger maps use the separable matmul
  DFT (matmul path) or ``torch.fft`` (default path).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dft import dft_kron_matrices, half_spectrum_width, irfft2_matmul, lowpass_matrices, rfft2_matmul, static_size

__all__ = ["FDFSP", "band_masks"]

_NUM_BANDS = 3
# Maps with at most this many pixels take the one-matrix (Kronecker) DFT in the spectral
# filter: on the matmul (export) path it replaces a dozen tiny matmuls; on the torch.fft path
# it is faster than an FFT only on very small maps (7 x 7 at a 224 input).
KRONECKER_MAX_PIXELS = 256
EAGER_KRONECKER_MAX_PIXELS = 64
_RECOVERY_CUTOFF = 0.25  # cycles per input pixel: what a stride-2 output grid can represent


def _frequency_grid(height: int, width: int) -> tuple[Tensor, Tensor]:
    """|f_y| ``[H, 1]`` and f_x ``[1, Wr]`` of the one-sided spectrum, in cycles per pixel."""
    ky = torch.arange(height, dtype=torch.float64)
    fy = torch.minimum(ky, height - ky) / height
    fx = torch.arange(half_spectrum_width(width), dtype=torch.float64) / width
    return fy[:, None], fx[None, :]


@lru_cache(maxsize=64)
def band_masks(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Soft radial bands of an ``H x W`` map (cached, float32).

    Returns:
        ``masks [3, H * Wr]`` (low, mid, high; they sum to one at every frequency) and
        ``weights [3, H * Wr]``, each mask divided by its sum (band averaging weights).
    """
    fy, fx = _frequency_grid(height, width)
    radius = torch.clamp(torch.sqrt(fy**2 + fx**2) / 0.5, max=1.0)
    low = torch.clamp(1 - 2 * radius, min=0)
    high = torch.clamp(2 * radius - 1, min=0)
    masks = torch.stack([low, 1 - low - high, high]).flatten(1)
    weights = masks / masks.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return masks.to(device, torch.float32), weights.to(device, torch.float32)


@lru_cache(maxsize=64)
def _pair_weights(height: int, width: int, device: torch.device) -> Tensor:
    """``[H * Wr * 2, 3]``: band averaging weights for squared ``(re, im)`` pairs, laid out as
    ``torch.view_as_real(spectrum).square().flatten(2)`` (so the sum ``re² + im²`` is folded
    into the band-averaging matmul)."""
    return band_masks(height, width, device)[1].T.repeat_interleave(2, dim=0).contiguous()


@lru_cache(maxsize=64)
def _concat_weights(height: int, width: int, device: torch.device) -> Tensor:
    """``[2 * H * Wr, 3]``: band averaging weights for squared ``[re | im]`` (concatenated) spectra."""
    weights = band_masks(height, width, device)[1].T
    return torch.cat([weights, weights]).contiguous()


@lru_cache(maxsize=64)
def _kernel_dft_basis(height: int, width: int, kernel_size: int, device: torch.device) -> Tensor:
    """Unnormalised DFT of the ``k x k`` kernel taps on an ``H x W`` grid (cached, float32).

    Returns ``[k*k, H * Wr * 2]``: for the tap at offset ``(dy, dx)`` (offsets ``-k//2..k//2``)
    and frequency ``(ky, kx)``, the pair ``(cos θ, -sin θ)`` with ``θ = 2π (ky dy / H + kx dx / W)``,
    i.e. ``exp(-iθ)`` laid out as ``torch.view_as_real`` does. Offsets wrap circularly on grids
    smaller than the kernel.
    """
    offsets = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    ky = torch.arange(height, dtype=torch.float64) / height
    kx = torch.arange(half_spectrum_width(width), dtype=torch.float64) / width
    angle = (
        2
        * math.pi
        * (
            offsets[:, None, None, None] * ky[None, None, :, None]
            + offsets[None, :, None, None] * kx[None, None, None, :]
        )
    )  # [k, k, H, Wr]
    basis = torch.stack([torch.cos(angle), -torch.sin(angle)], dim=-1)  # [k, k, H, Wr, 2]
    return basis.flatten(0, 1).flatten(1).to(device, torch.float32)


class FDFSP(nn.Module):
    """Frequency-domain full-spectrum perceiver after a stride-2 stage (identity at init).

    Args:
        channels: ``C``, channels of the stage output ``x``.
        in_channels: ``Cin``, channels of the stage input.
        kernel_size: odd size of the static global filter's spatial kernel.
        mlp_reduction: the gain MLP maps ``3C -> max(8, C // mlp_reduction) -> 3C``.

    Attributes:
        use_matmul_dft: use the real-matmul DFT (ONNX export) instead of ``torch.fft``.
    """

    def __init__(self, channels: int, in_channels: int, kernel_size: int = 7, mlp_reduction: int = 8):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"FDFSP kernel_size must be a positive odd number, got {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.use_matmul_dft = False
        self._spectrum_cache: dict[tuple, Tensor] = {}  # inference only, see kernel_spectrum
        hidden = max(8, channels // mlp_reduction)
        self.gain_mlp = nn.Sequential(
            nn.Linear(_NUM_BANDS * channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, _NUM_BANDS * channels),
        )
        self.kernel = nn.Parameter(torch.zeros(channels, kernel_size, kernel_size))
        # PixelUnshuffle(2) + 1x1 conv (4*Cin -> C) is exactly a 2x2 stride-2 conv with the
        # same weights (channel c*4 + 2i + j of the unshuffled map is pixel (i, j) of channel c);
        # the conv form skips materialising the unshuffled map.
        self.recover = nn.Conv2d(in_channels, channels, kernel_size=2, stride=2, bias=False)
        last = cast(nn.Linear, self.gain_mlp[-1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        nn.init.zeros_(self.recover.weight)

    def forward(self, x: Tensor, stage_input: Tensor) -> Tensor:
        """``x [B, C, H, W]`` (stage output), ``stage_input [B, Cin, H', W']`` -> ``[B, C, H, W]``.

        ``H = ceil(H' / 2)`` and ``W = ceil(W' / 2)``, as produced by a stride-2 stage.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = self._spectral(x.float()) + self._recovery(stage_input.float(), x.shape[-2:])
        return y.to(x.dtype)

    def kernel_spectrum(self, height: int, width: int) -> Tensor:
        """Unnormalised DFT of the spatial kernel on an ``H x W`` grid: ``[C, H, Wr, 2]`` (re, im).

        Without autograd (inference) the result is cached until the kernel changes (its
        storage or version counter: optimiser steps and ``load_state_dict`` bump it).
        """
        kernel = self.kernel
        key = None
        if not torch.is_grad_enabled():
            key = (height, width, kernel.device, kernel.dtype, kernel.data_ptr(), kernel._version)
            cached = self._spectrum_cache.get(key)
            if cached is not None:
                return cached
        basis = _kernel_dft_basis(height, width, self.kernel_size, kernel.device)
        spectrum = (kernel.float().flatten(1) @ basis).view(self.channels, height, -1, 2)  # [C, H, Wr, 2]
        if key is not None:
            self._spectrum_cache.clear()  # one size at a time: a stale kernel is never kept
            self._spectrum_cache[key] = spectrum
        return spectrum

    def band_gains(self, x: Tensor) -> Tensor:
        """The gains ``g_k`` the block applies to ``x [B, C, H, W]`` (its stage output):
        ``[B, C, 3]`` (low, mid, high) in (0, 2), 1 at init. For inspection; ``forward``
        computes the same gains on its own path."""
        height, width = static_size(x.shape[-2:])
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")
        squares = torch.view_as_real(spectrum).square().flatten(2)  # [B, C, H*Wr*2]
        return self._gains(squares @ _pair_weights(height, width, x.device))

    def _gains(self, energy: Tensor) -> Tensor:
        """Band energies ``[B, C, 3]`` -> gains ``[B, C, 3]`` in (0, 2)."""
        # reshapes keep the batch dimension as -1: constant shapes in an exported graph
        log_energy = torch.log(energy + 1e-5).reshape(-1, self.channels * _NUM_BANDS)
        return (2 * torch.sigmoid(self.gain_mlp(log_energy))).reshape(-1, self.channels, _NUM_BANDS)

    def _band_filter(self, energy: Tensor, height: int, width: int, flat: bool = False) -> Tensor:
        """Content-adaptive band gains: band energies ``[B, C, 3]`` -> ``Σ_k g_k M_k [B, C, H, Wr]``
        (``[B, C, H * Wr]`` when ``flat``)."""
        masks, _ = band_masks(height, width, energy.device)  # [3, H*Wr]
        bands = self._gains(energy) @ masks  # [B, C, H*Wr]
        return bands if flat else bands.reshape(-1, self.channels, height, half_spectrum_width(width))

    def _spectral(self, x: Tensor) -> Tensor:
        """``irfft2((Σ_k g_k M_k + K̂) ⊙ X̂)``: ``[B, C, H, W]`` -> same.

        Band energies are the mean of ``|X̂|²`` over each band (weighted by the mask).
        """
        height, width = static_size(x.shape[-2:])
        kernel = self.kernel_spectrum(height, width)
        if height * width <= (KRONECKER_MAX_PIXELS if self.use_matmul_dft else EAGER_KRONECKER_MAX_PIXELS):
            return self._spectral_kron(x, kernel, height, width)
        if self.use_matmul_dft:
            kernel_re, kernel_im = kernel[..., 0], kernel[..., 1]
            re, im = rfft2_matmul(x)
            _, weights = band_masks(height, width, x.device)
            energy = (re * re + im * im).reshape(-1, self.channels, height * half_spectrum_width(width)) @ weights.T
            filter_re = self._band_filter(energy, height, width) + kernel_re
            out_re = re * filter_re - im * kernel_im
            out_im = im * filter_re + re * kernel_im
            return irfft2_matmul(out_re, out_im, (height, width))
        spectrum = torch.fft.rfft2(x, norm="ortho")
        squares = torch.view_as_real(spectrum).square().flatten(2)  # [B, C, H*Wr*2]
        energy = squares @ _pair_weights(height, width, x.device)  # [B, C, 3]
        spectral_filter = torch.view_as_complex(kernel) + self._band_filter(energy, height, width)
        return torch.fft.irfft2(spectrum * spectral_filter, s=(height, width), norm="ortho")

    def _spectral_kron(self, x: Tensor, kernel: Tensor, height: int, width: int) -> Tensor:
        """``_spectral`` of a small map with the one-matrix DFT (``dft_kron_matrices``): the
        spectrum is carried as ``[re | im]`` flattened, ``[B, C, 2 * H * Wr]``."""
        forward, inverse = dft_kron_matrices(height, width, x.device, x.dtype)
        n = forward.shape[1] // 2
        spectrum = x.reshape(-1, self.channels, height * width) @ forward  # [B, C, 2n]
        energy = spectrum.square() @ _concat_weights(height, width, x.device)  # [B, C, 3]
        filter_re = self._band_filter(energy, height, width, flat=True) + kernel[..., 0].flatten(1)
        kernel_im = kernel[..., 1].flatten(1)  # [C, n]
        re, im = spectrum[..., :n], spectrum[..., n:]
        filtered = torch.cat([re * filter_re - im * kernel_im, im * filter_re + re * kernel_im], dim=-1)
        return (filtered @ inverse).reshape(-1, self.channels, height, width)

    def _recovery(self, stage_input: Tensor, out_size: torch.Size) -> Tensor:
        """High band of the stage input, folded onto the output grid: -> ``[B, C, H, W]``."""
        height, width = static_size(stage_input.shape[-2:])
        # Frequencies with |f| > 1/4 cycle per input pixel on either axis (what the stride-2
        # output grid cannot represent) = everything but a separable low-pass band.
        low_h, low_w = lowpass_matrices(height, width, _RECOVERY_CUTOFF, stage_input.device, stage_input.dtype)
        high = stage_input - low_h @ stage_input @ low_w
        if height % 2 or width % 2:
            high = F.pad(high, (0, width % 2, 0, height % 2))
        if ((height + 1) // 2, (width + 1) // 2) != static_size(out_size):
            raise ValueError(f"FDFSP: stage input {height}x{width} does not halve to the output size {tuple(out_size)}")
        return self.recover(high)
