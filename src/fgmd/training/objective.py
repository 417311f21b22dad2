"""The FG-MD training objective (docs/DESIGN.md §2 "Objective").

``L = CE(P h_A, y) + CE(P h_B, y) + q(h_A) + q(h_B) + triplet(A→B) + triplet(B→A) + λ·DAMD``

Batch layout: each branch encodes ``3B`` images ordered by role — ``[0, B)`` the anchors
(the pairs of the batch), ``[B, 2B)`` the mined positives and ``[2B, 3B)`` the mined
negatives *for the other modality's anchors*. So ``triplet(A→B)`` uses the A anchors with
B's positives/negatives, and vice versa. Classification and quantization cover all ``3B``
codes of each branch (every one is labelled); DAMD compares the anchors' level maps,
which show the same scene in both modalities.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from fgmd.config import LossConfig
from fgmd.training.damd import DAMD

TERMS = ("classification", "quantization", "triplet", "damd")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [N, L]`` against multi-hot ``labels [N, L]`` (spread evenly over a sample's labels)."""
    target = labels / labels.sum(dim=1, keepdim=True).clamp_min(1.0)
    return F.cross_entropy(logits, target)


def quantization_loss(codes: torch.Tensor) -> torch.Tensor:
    """``mean((|h| - 1)^2)`` over codes ``[N, K]``."""
    return (codes.abs() - 1.0).pow(2).mean()


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge triplet loss on L2-normalised codes ``[B, K]``: ``mean(max(0, d(a,p) - d(a,n) + margin))``."""
    anchor, positive, negative = (F.normalize(x, dim=1) for x in (anchor, positive, negative))
    d_pos = (anchor - positive).pow(2).sum(1).clamp_min(1e-12).sqrt()
    d_neg = (anchor - negative).pow(2).sum(1).clamp_min(1e-12).sqrt()
    return F.relu(d_pos - d_neg + margin).mean()


class FGMDObjective(nn.Module):
    """Holds the trained parts of the objective: projection ``P`` and the DAMD attention modules."""

    def __init__(self, config: LossConfig, bits: int, num_classes: int, level_channels: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.projection = nn.Linear(bits, num_classes, bias=False)
        nn.init.orthogonal_(self.projection.weight)
        self.damd = DAMD(level_channels, config.damd_reduction) if config.damd else None

    def weights(self) -> dict[str, float]:
        c = self.config
        return {
            "classification": c.classification_weight,
            "quantization": c.quantization_weight,
            "triplet": c.triplet_weight,
            "damd": c.damd_weight if c.damd else 0.0,
        }

    def forward(
        self,
        codes: dict[str, torch.Tensor],
        labels: dict[str, torch.Tensor],
        anchor_features: dict[str, tuple[torch.Tensor, ...]] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and every term, unweighted (``name``) and weighted (``name_weighted``).

        The terms are detached 0-dim tensors on the loss's device, so a training loop can
        accumulate them there and read them once per epoch (no host synchronisation per step).

        Args:
            codes: per modality, ``[3B, K]`` tanh codes in the role order of the module docstring.
            labels: per modality, ``[3B, L]`` multi-hot labels of those codes.
            anchor_features: per modality, the five level maps of the ``B`` anchors (needed with DAMD).
        """
        mod_a, mod_b = codes
        batch = codes[mod_a].shape[0] // 3
        raw: dict[str, torch.Tensor] = {}
        raw["classification"] = _add(classification_loss(self.projection(codes[m]), labels[m]) for m in codes)
        raw["quantization"] = _add(quantization_loss(codes[m]) for m in codes)
        a, b = codes[mod_a], codes[mod_b]
        raw["triplet"] = triplet_loss(
            a[:batch], b[batch : 2 * batch], b[2 * batch :], self.config.margin
        ) + triplet_loss(b[:batch], a[batch : 2 * batch], a[2 * batch :], self.config.margin)
        extra: dict[str, torch.Tensor] = {}
        if self.damd is not None:
            if anchor_features is None:
                raise ValueError("DAMD is on but no anchor features were given")
            raw["damd"], extra = self.damd(anchor_features[mod_a], anchor_features[mod_b])
        weights = self.weights()
        total = _add(weights[name] * value for name, value in raw.items())
        terms = {name: value.detach() for name, value in {**raw, **extra}.items()}
        terms.update({f"{name}_weighted": weights[name] * value.detach() for name, value in raw.items()})
        terms["total"] = total.detach()
        return total, terms


def _add(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """``v1 + v2 + ...`` in order (what ``sum`` computes, without its ``0 +``), typed as a tensor."""
    return functools.reduce(operator.add, values)
