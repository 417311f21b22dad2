"""Hash head: pooled descriptor -> K relaxed hash bits in (-1, 1) (docs/DESIGN.md §2)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["HashHead"]


class HashHead(nn.Module):
    """``Linear -> BN1d -> ReLU -> Linear -> BN1d -> ReLU -> Linear(bits) -> tanh``.

    The two hidden linears have no bias (the BN that follows makes it redundant).
    BatchNorm1d cannot compute batch statistics from one sample, so training needs
    batches of at least 2; in eval mode (running statistics) batch size 1 works.

    Args:
        in_features: width of the pooled descriptor (1280 for MobileNetV2).
        bits: ``K``, number of hash bits.
        hidden: width of the two hidden layers.
    """

    def __init__(self, in_features: int, bits: int, hidden: int = 512):
        super().__init__()
        self.bits = bits
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, bits),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_features]`` -> codes ``[B, bits]`` in (-1, 1)."""
        return self.layers(x).tanh()
