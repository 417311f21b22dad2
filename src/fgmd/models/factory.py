"""Building an FG-MD model from a full run :class:`~fgmd.config.Config`, fresh or from a checkpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from fgmd.config import Config, ConfigError
from fgmd.models.fgmd import FGMD, build_model
from fgmd.runtime.checkpoint import load_checkpoint


def model_from_config(config: Config, load_pretrained: bool = True) -> FGMD:
    """A freshly initialised FG-MD for the modalities and band counts of ``config``.

    ``load_pretrained=False`` skips ``model.pretrained`` (use it when checkpoint weights are
    loaded next, or for parameter counts and timings: no download, no weights file needed).

    Raises:
        ConfigError: a modality's ``channels`` is still 0 (to be inferred from the images:
            ``fgmd.data.validation.prepare_training_data`` does that; run configs hold the number).
    """
    in_channels = {m: config.data.modality_config(m).channels for m in config.data.modalities}
    unknown = [m for m, channels in in_channels.items() if channels == 0]
    if unknown:
        raise ConfigError(
            f"the band count of {', '.join(unknown)} is not known: set data.modality.<m>.channels "
            f"for {', '.join(unknown)} (0 means: infer it from the training images, which only "
            "fgmd train and fgmd check-data do)"
        )
    return build_model(config.model, in_channels, load_pretrained=load_pretrained)


def load_run(
    checkpoint: str | os.PathLike,
    overrides: Sequence[str] = (),
    device: str | torch.device | None = None,
) -> tuple[FGMD, Config, dict[str, Any]]:
    """The trained model of a checkpoint (``best.pt`` or ``last.pt``), its config and the checkpoint.

    The one way from a checkpoint file to a model. The architecture is built with
    ``load_pretrained=False``: the stored weights replace any initialisation, so a run trained
    from ``model.pretrained=imagenet`` needs no download and no weights file to be used.

    Args:
        checkpoint: path of an fgmd checkpoint (read with ``weights_only=True``).
        overrides: ``key=value`` config overrides applied to the stored config (e.g.
            ``data.root=/moved/data``); they cannot change the architecture's weights shapes
            without ``load_state_dict`` failing.
        device: where to put the model; ``None`` leaves it on the CPU.

    Returns:
        ``(model in eval mode, config with overrides, checkpoint dict)``.
    """
    state = load_checkpoint(checkpoint)
    config = Config.from_run(state["config"]).with_overrides(list(overrides))
    model = model_from_config(config, load_pretrained=False)
    model.load_state_dict(state["model"])
    model.eval()
    if device is not None:
        model.to(device)
    return model, config, state
