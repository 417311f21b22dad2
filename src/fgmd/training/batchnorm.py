"""Re-estimating BatchNorm running statistics for the current weights.

While the weights move fast (from-scratch training, high learning rates), the running
averages that BatchNorm uses in eval mode lag behind the batch statistics seen in training;
eval-mode codes can then collapse to one code for every image. Re-estimating the statistics
with a forward pass over training images (cumulative average, no gradient), as SWA's
``update_bn`` does, makes evaluation reflect the weights actually learned.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from fgmd.models import FGMD


@torch.no_grad()
def recalibrate_batchnorm(model: FGMD, batches: Iterable[dict[str, torch.Tensor]]) -> None:
    """Recompute every BatchNorm's running mean/variance from ``batches``.

    ``batches`` yields, per modality of ``model``, ``[B, C, S, S]`` images on the model's
    device, transformed as for evaluation (a seeded random subset of the training pairs:
    datasets are often sorted by class, so the first pairs would be biased). Every process
    of a distributed run passes the same batches and computes identical statistics. The
    model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    model.train()
    try:
        for batch in batches:
            for modality in model.modalities:
                model.encode(batch[modality], modality)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
