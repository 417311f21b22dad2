"""Building an FG-MD model from a full run :class:`~fgmd.config.Config`."""

from __future__ import annotations

from fgmd.config import Config
from fgmd.models.fgmd import FGMD, build_model


def model_from_config(config: Config, load_pretrained: bool = True) -> FGMD:
    """A freshly initialised FG-MD for the modalities and band counts of ``config``.

    ``load_pretrained=False`` skips ``model.pretrained`` (use it when checkpoint weights are
    loaded next, or for parameter counts and timings: no download, no weights file needed).
    """
    in_channels = {m: config.data.modality_config(m).channels for m in config.data.modalities}
    return build_model(config.model, in_channels, load_pretrained=load_pretrained)
