"""MobileNetV2 trunk split into the levels L0..L4 used by FDFSP, ADF and DAMD; stem adaptation.

The trunk keeps torchvision's ``features`` module unchanged (parameter names
``features.<i>.…``), so torchvision's ImageNet state dict (less the classifier) loads into it.

| level | slice          | channels (width 1.0) | stride |
|-------|----------------|----------------------|--------|
| L0    | features[0:2]  | 16                   | 2      |
| L1    | features[2:4]  | 24                   | 4      |
| L2    | features[4:7]  | 32                   | 8      |
| L3    | features[7:14] | 96                   | 16     |
| L4    | features[14:18]| 320                  | 32     |
| last  | features[18]   | 1280 * max(1, width) | 32     |

Every level starts with a stride-2 layer.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

__all__ = ["LEVEL_SLICES", "MobileNetV2Trunk", "adapt_stem", "adapt_stem_weight"]

LEVEL_SLICES: tuple[tuple[int, int], ...] = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 18))
_LAST = 18
STEM_MODES = ("adapt", "replicate")  # model.stem choices
#: levels that can take an FDFSP block (model.fdfsp_levels): the stride-2 stages after the stem
#: (L0's input is the image itself)
FDFSP_LEVEL_CHOICES = (1, 2, 3, 4)


class MobileNetV2Trunk(nn.Module):
    """torchvision MobileNetV2 ``features`` (random init), run level by level.

    With ``zero_init_residual`` the last BatchNorm of every residual inverted-residual block
    starts with zero scale, so each such block starts as the identity (Goyal et al. 2017,
    timm's ``zero_init_last``). Trained from scratch, the trunk then learns several times
    faster; pretrained weights overwrite it.

    Attributes:
        features: the torchvision ``nn.Sequential`` (19 layers).
        level_channels: output channels of L0..L4.
        out_channels: channels of the final 1x1 conv (``features[18]``).
    """

    def __init__(self, width_mult: float = 1.0, zero_init_residual: bool = True):
        super().__init__()
        self.features = mobilenet_v2(weights=None, width_mult=width_mult).features
        if zero_init_residual:
            for block in self.features:
                if getattr(block, "use_res_connect", False):
                    nn.init.zeros_(block.conv[-1].weight)
        self.level_channels: tuple[int, ...] = tuple(self.features[stop - 1].out_channels for _, stop in LEVEL_SLICES)
        self.out_channels: int = self.features[_LAST].out_channels

    def forward_level(self, level: int, x: Tensor) -> Tensor:
        """Run level ``level`` (0..4): ``[B, C_in, H, W]`` -> ``[B, C_level, ceil(H/2), ceil(W/2)]``."""
        start, stop = LEVEL_SLICES[level]
        for index in range(start, stop):
            x = self.features[index](x)
        return x

    def forward_last(self, x: Tensor) -> Tensor:
        """Final 1x1 conv + BN + ReLU6: ``[B, C_L4, H, W]`` -> ``[B, out_channels, H, W]``."""
        return self.features[_LAST](x)


def adapt_stem_weight(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt a 3-band stem filter bank ``[O, 3, k, k]`` to ``in_channels`` bands ``[O, N, k, k]``.

    The sum over input bands is preserved, so an image whose bands are all equal gives the
    same response as the RGB stem on the equal-band (gray) RGB image:

    - ``N <= 3``: the RGB filters are folded, band ``n`` gets ``Σ_{c ≡ n (mod N)} w_c``
      (``N = 1``: the sum of the RGB filters; ``N = 3``: unchanged).
    - ``N >= 3``: the RGB filters are repeated cyclically and each copy is divided by the
      number of copies of its source filter; for ``N`` a multiple of 3 this is exactly
      "repeat and rescale by 3/N".
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected a 3-band stem weight [O, 3, k, k], got {tuple(weight.shape)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    source = torch.arange(3)
    if in_channels <= 3:
        folding = torch.zeros(in_channels, 3, dtype=weight.dtype, device=weight.device)
        folding[source % in_channels, source] = 1.0
    else:
        band = torch.arange(in_channels)
        copies = torch.bincount(band % 3, minlength=3).to(weight.dtype)
        folding = torch.zeros(in_channels, 3, dtype=weight.dtype, device=weight.device)
        folding[band, band % 3] = 1.0 / copies[band % 3].to(weight.device)
    # [O, N, k, k] = Σ_c folding[n, c] * weight[o, c]
    return torch.einsum("nc,ockl->onkl", folding, weight)


def adapt_stem(features: nn.Sequential, in_channels: int, mode: str) -> int:
    """Adapt the first conv of MobileNetV2 ``features`` (in place) to ``in_channels`` bands.

    Args:
        features: torchvision MobileNetV2 ``features`` whose stem conv still takes 3 bands.
        in_channels: bands of the input images.
        mode: ``"adapt"`` replaces the stem conv by one over ``in_channels`` bands with
            :func:`adapt_stem_weight`; ``"replicate"`` keeps the 3-band stem and the caller
            replicates a 1-band image to 3 bands (only valid for 1 or 3 bands).

    Returns:
        The number of bands the trunk consumes (the caller replicates when it differs).
    """
    if mode not in STEM_MODES:
        raise ValueError(f"stem mode must be one of {STEM_MODES}, got {mode!r}")
    stem = cast(nn.Sequential, features[0])
    conv = cast(nn.Conv2d, stem[0])
    if conv.in_channels != 3:
        raise ValueError(f"the stem conv was already adapted to {conv.in_channels} bands")
    if in_channels == 3:
        return 3
    if mode == "replicate":
        if in_channels != 1:
            raise ValueError(
                f"stem mode 'replicate' only handles 1-band inputs (got {in_channels} bands); "
                "use model.stem=adapt for multi-band images"
            )
        return 3
    adapted = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=cast(tuple[int, int], conv.kernel_size),
        stride=cast(tuple[int, int], conv.stride),
        padding=cast(tuple[int, int], conv.padding),
        bias=conv.bias is not None,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        adapted.weight.copy_(adapt_stem_weight(conv.weight, in_channels))
        if conv.bias is not None and adapted.bias is not None:
            adapted.bias.copy_(conv.bias)
    stem[0] = adapted
    return in_channels
