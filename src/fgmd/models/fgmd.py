"""FGMD: one :class:`ModalityEncoder` per modality (weights not shared), and ``build_model``."""

from __future__ import annotations

import copy
from typing import cast

from torch import Tensor, nn

from ..config import ModelConfig
from .encoder import EncoderOutput, ModalityEncoder
from .pretrained import load_pretrained_trunk

__all__ = ["FGMD", "build_model"]


class FGMD(nn.Module):
    """Two-branch cross-modal hashing network.

    Args:
        encoders: ``{modality: encoder}`` for exactly two modalities; their order is kept.

    Attributes:
        encoders: ``nn.ModuleDict`` of the branches.
        modalities: the two modality names, in order.
    """

    def __init__(self, encoders: dict[str, ModalityEncoder]):
        super().__init__()
        if len(encoders) != 2:
            raise ValueError(f"FGMD needs exactly two modalities, got {list(encoders)}")
        self.encoders = nn.ModuleDict(encoders)
        self.modalities: tuple[str, str] = tuple(encoders)  # type: ignore[assignment]

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of the level maps L0..L4 (the same in both branches)."""
        return self.encoder(self.modalities[0]).level_channels

    @property
    def bits(self) -> int:
        """``K``, the code length."""
        return self.encoder(self.modalities[0]).bits

    def encode(self, x: Tensor, modality: str) -> Tensor:
        """Images ``[B, C_modality, H, W]`` of ``modality`` -> codes ``[B, K]``."""
        return self.encoder(modality).encode(x)

    def forward(self, images: dict[str, Tensor]) -> dict[str, EncoderOutput]:
        """``{modality: [B, C_modality, H, W]}`` -> ``{modality: EncoderOutput}`` for the given keys."""
        return {name: self.encoder(name)(x) for name, x in images.items()}

    def module_parameters(self) -> list[nn.Parameter]:
        """The FDFSP and ADF parameters of both branches (empty for the baseline), in
        ``parameters()`` order: what ``train.module_lr_mult`` applies to."""
        own: set[int] = set()
        for name in self.modalities:
            encoder = self.encoder(name)
            for module in (encoder.fdfsp, encoder.adf):
                if module is not None:
                    own.update(id(p) for p in module.parameters())
        return [p for p in self.parameters() if id(p) in own]

    def encoder(self, modality: str) -> ModalityEncoder:
        """The branch of ``modality`` (``self.encoders[modality]``, typed)."""
        if modality not in self.encoders:
            raise KeyError(f"unknown modality {modality!r}; the model has {list(self.modalities)}")
        return cast(ModalityEncoder, self.encoders[modality])


def build_model(config: ModelConfig, in_channels: dict[str, int], load_pretrained: bool = True) -> FGMD:
    """Build the two branches from one initial encoder.

    A reference 3-band encoder is built once (its trunk loaded with ImageNet weights when
    ``config.pretrained`` asks for them) and deep-copied per modality; each copy's stem is
    then adapted to its band count (``config.stem``) from the RGB filters. Both branches
    therefore start from identical weights (except the adapted stem), so the channel-wise
    distillation compares corresponding channels.

    Args:
        config: the model settings.
        in_channels: ``{modality: bands}``, two entries, in modality order.
        load_pretrained: ``False`` skips the pretrained weights (when a checkpoint's weights
            replace them anyway, or only the architecture matters: counting, timing).
    """
    if len(in_channels) != 2:
        raise ValueError(f"build_model needs exactly two modalities, got {list(in_channels)}")
    reference = ModalityEncoder(config, 3)
    if load_pretrained and config.pretrained != "none":
        load_pretrained_trunk(reference.trunk, config.pretrained, config.pretrained_path, config.width_mult)
    encoders = {}
    for name, bands in in_channels.items():
        encoder = copy.deepcopy(reference)
        encoder.adapt_input(bands, config.stem)
        encoders[name] = encoder
    return FGMD(encoders)
