"""Re-estimating BatchNorm running statistics for the current weights.

While the weights move fast (from-scratch training, high learning rates), the running
averages that BatchNorm uses in eval mode lag behind the batch statistics seen in training;
eval-mode codes can then collapse to one code for every image. Re-estimating the statistics
with a forward pass over training images (cumulative average, no gradient), as SWA's
``update_bn`` does, makes evaluation reflect the weights actually learned.
"""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Subset

from fgmd.data.datasets.base import CrossModalDataset
from fgmd.models import FGMD


@torch.no_grad()
def recalibrate_batchnorm(
    model: FGMD,
    pairs: CrossModalDataset,
    batch_size: int,
    max_batches: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> None:
    """Recompute every BatchNorm's running mean/variance from ``max_batches`` batches of ``pairs``.

    ``pairs`` should use evaluation transforms. The pairs are a random subset drawn with
    ``seed`` (datasets are often sorted by class, so the first pairs would be biased); every
    process of a distributed run draws the same subset and computes identical statistics.
    The model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms or max_batches <= 0 or len(pairs) == 0:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    model.train()
    count = min(len(pairs), batch_size * max_batches)
    chosen = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    loader = DataLoader(Subset(pairs, chosen), batch_size=batch_size, shuffle=False, drop_last=count > batch_size)
    try:
        for batch in loader:
            for modality in model.modalities:
                model.encode(batch[f"image_{modality}"].to(device), modality)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
