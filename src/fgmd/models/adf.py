"""ADF (Adaptive Dynamic Filter) with its semantic gate, and gated pooling (docs/DESIGN.md §2).

ADF on a map ``U [B, C, H, W]``:

1. Decoupled dynamic 3x3 filter. A per-pixel spatial kernel ``S [B, 9, H, W]`` (1x1 conv
   ``C -> 9``, softmax over the 9 taps) times a per-channel kernel ``K [B, C, 9]`` (MLP
   ``C -> C/r -> 9C`` on the globally pooled map, softmax over the taps):
   ``V[b,c,p] = Σ_t S[b,t,p] K[b,c,t] U[b,c,p + offset_t]`` with zero padding, computed as
   shift-and-add over 9 shifted slices of the padded map (slicing, multiplication, addition:
   no unfold, no ``[B, C, 9, H, W]`` temporaries, no custom ops; exports to ONNX). (Measured
   against stacking the 9 slices into one ``[B, C, 9, H, W]`` tensor and against extracting
   them with a one-hot grouped convolution, without autograd: the same speed at batch 1 and
   the fastest at batch 32, in PyTorch and in onnxruntime.)
2. Residual ``U' = U + gamma ⊙ V`` with a per-channel ``gamma`` initialised to zero.
3. Semantic gate ``G = sigmoid(conv1x1(U') -> 1 channel)``, weight and bias zero-initialised,
   so the gate is uniform (0.5) at init.

ADF returns ``(U', G)``: by default the gate does not rescale the features. With
``gate_features`` (a design variant, ``model.adf_gate_features``) it returns ``(2G ⊙ U', G)``:
the gate also suppresses the features the later layers see, and ``2G = 1`` at init keeps the
module the identity. The gate is used by
:class:`GatedPool` to weight the pooling of the final 1280-channel map (``features[18]``,
a 1x1 conv, so at the same spatial size as L4). Hence a uniform gate gives plain average
pooling, and the module is exactly the identity on the pooled descriptor at init.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ADF", "GatedPool"]

_TAPS = 9


class ADF(nn.Module):
    """Decoupled dynamic 3x3 filter + residual + semantic gate.

    Args:
        channels: ``C``.
        reduction: hidden width of the channel-kernel MLP is ``max(8, C // reduction)``.
        gate_features: also scale the returned features by ``2G`` (identity at init).
    """

    def __init__(self, channels: int, reduction: int = 4, gate_features: bool = False):
        super().__init__()
        self.channels = channels
        self.gate_features = gate_features
        hidden = max(8, channels // reduction)
        self.spatial_kernel = nn.Conv2d(channels, _TAPS, kernel_size=1)
        self.channel_kernel = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, _TAPS * channels),
        )
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gate = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(cast(Tensor, self.gate.bias))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, C, H, W]`` -> ``(features [B, C, H, W], gate [B, 1, H, W] in (0, 1))``.

        The gate is computed from the filtered features ``U'``; with ``gate_features`` the
        returned features are ``2G ⊙ U'``.
        """
        channels = self.channels
        height, width = int(x.shape[2]), int(x.shape[3])  # constants when traced for export
        spatial = torch.softmax(self.spatial_kernel(x), dim=1)  # [B, 9, H, W]
        context = x.mean(dim=(2, 3))  # [B, C]
        per_channel = torch.softmax(self.channel_kernel(context).reshape(-1, channels, _TAPS), dim=2).reshape(
            -1, channels, _TAPS, 1, 1
        )  # [B, C, 9, 1, 1]
        padded = F.pad(x, (1, 1, 1, 1))
        filtered: Tensor | None = None
        for tap in range(_TAPS):
            dy, dx = divmod(tap, 3)
            shifted = padded[:, :, dy : dy + height, dx : dx + width]
            term = shifted * spatial[:, tap : tap + 1] * per_channel[:, :, tap]
            filtered = term if filtered is None else filtered + term
        assert filtered is not None  # _TAPS > 0
        features = x + self.gamma * filtered
        gate = torch.sigmoid(self.gate(features))
        if self.gate_features:
            features = features * (2 * gate)
        return features, gate


class GatedPool(nn.Module):
    """Gate-weighted global pooling: ``f = Σ_p G(p) F(p) / (Σ_p G(p) + eps)``.

    With ``gate=None`` it is plain global average pooling; a spatially uniform gate gives the
    same result up to ``eps``.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, features: Tensor, gate: Tensor | None = None) -> Tensor:
        """``features [B, C, H, W]``, ``gate [B, 1, H, W]`` or None -> ``[B, C]``."""
        if gate is None:
            return features.mean(dim=(2, 3))
        weighted = (features * gate).sum(dim=(2, 3))
        return weighted / (gate.sum(dim=(2, 3)) + self.eps)
