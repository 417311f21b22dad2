"""ModalityEncoder: one branch of FG-MD = trunk + FDFSP + ADF + gated pool + hash head."""

from __future__ import annotations

from typing import NamedTuple, cast

from torch import Tensor, nn

from ..config import ModelConfig
from .adf import ADF, GatedPool
from .backbone import LEVEL_SLICES, MobileNetV2Trunk, adapt_stem
from .fdfsp import FDFSP
from .head import HashHead

__all__ = ["EncoderOutput", "ModalityEncoder"]


class EncoderOutput(NamedTuple):
    """Output of :meth:`ModalityEncoder.forward`.

    Attributes:
        codes: ``[B, K]`` relaxed hash codes in (-1, 1).
        features: the 5 level maps L0..L4 (``[B, C_l, H/2^(l+1), W/2^(l+1)]``, sizes
            rounded up); the FDFSP levels (``model.fdfsp_levels``, L2-L4 by default) after
            their block and L4 after ADF (when enabled).
    """

    codes: Tensor
    features: tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


class ModalityEncoder(nn.Module):
    """Image of one modality ``[B, in_channels, H, W]`` -> hash codes (and level features).

    ``config.fdfsp`` adds an :class:`FDFSP` after each level of ``config.fdfsp_levels``
    (L2, L3 and L4 by default); ``config.adf`` adds :class:`ADF` on L4, whose gate weights the
    pooling of the final 1280-channel map (and, with ``config.adf_gate_features``, also scales
    the L4 features by ``2G``). With both off this is the plain baseline: MobileNetV2 trunk,
    average pooling, head. Both modules are the identity at init, so a full encoder whose
    shared weights are copied from a baseline encoder computes the same codes.

    Attributes:
        in_channels: bands of the input images.
        trunk_channels: bands the trunk's stem consumes (3 when a 1-band image is replicated).
    """

    def __init__(self, config: ModelConfig, in_channels: int):
        super().__init__()
        self.trunk = MobileNetV2Trunk(config.width_mult, config.zero_init_residual)
        channels = self.trunk.level_channels
        self.fdfsp = (
            nn.ModuleDict(
                {
                    str(level): FDFSP(
                        channels[level],
                        channels[level - 1],
                        kernel_size=config.fdfsp_kernel_size,
                        mlp_reduction=config.fdfsp_mlp_reduction,
                    )
                    for level in sorted(config.fdfsp_levels)
                }
            )
            if config.fdfsp
            else None
        )
        self.adf = (
            ADF(channels[4], reduction=config.adf_reduction, gate_features=config.adf_gate_features)
            if config.adf
            else None
        )
        self.pool = GatedPool()
        self.head = HashHead(self.trunk.out_channels, config.bits, hidden=config.head_hidden)
        self.in_channels = 3
        self.trunk_channels = 3
        self.adapt_input(in_channels, config.stem)

    def adapt_input(self, in_channels: int, stem: str) -> None:
        """Adapt the 3-band stem to ``in_channels`` bands (``stem``: "adapt" or "replicate")."""
        self.trunk_channels = adapt_stem(self.trunk.features, in_channels, stem)
        self.in_channels = in_channels

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of the level maps L0..L4."""
        return self.trunk.level_channels

    @property
    def bits(self) -> int:
        """``K``, the code length."""
        return self.head.bits

    def forward(self, x: Tensor) -> EncoderOutput:
        """``[B, in_channels, H, W]`` -> :class:`EncoderOutput` (codes and L0..L4 maps)."""
        codes, features = self._run(x, keep_features=True)
        return EncoderOutput(codes, cast(tuple[Tensor, Tensor, Tensor, Tensor, Tensor], features))

    def encode(self, x: Tensor) -> Tensor:
        """``[B, in_channels, H, W]`` -> codes ``[B, K]``; no level maps are kept."""
        codes, _ = self._run(x, keep_features=False)
        return codes

    def _run(self, x: Tensor, keep_features: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels}-band images, got {x.shape[1]} bands")
        if self.trunk_channels != self.in_channels:
            x = x.expand(-1, self.trunk_channels, -1, -1)
        features: list[Tensor] = []
        gate = None
        for level in range(len(LEVEL_SLICES)):
            stage_input = x
            x = self.trunk.forward_level(level, x)
            if self.fdfsp is not None and str(level) in self.fdfsp:
                x = self.fdfsp[str(level)](x, stage_input)
            if level == 4 and self.adf is not None:
                x, gate = self.adf(x)
            if keep_features:
                features.append(x)
        pooled = self.pool(self.trunk.forward_last(x), gate)
        return self.head(pooled), tuple(features)
