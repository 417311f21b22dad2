"""DAMD: Dual-Attention Mutual Distillation (docs/DESIGN.md §2), used in training only.

Each branch is distilled towards the other one's (detached) feature maps, symmetrically:

* semantic (channel attention) on levels L2, L3, L4: ``rho = sigmoid(MLP(GAP(T)))``
  normalised to sum one over channels; each channel map is L2-normalised over space;
  ``L_sem = mean_b sum_c rho_bc * mean_hw (S_hat - T_hat)^2``, at most ``4 / (H W)``.
* spatial (spatial attention) on levels L0, L1, L2: ``rho = sigmoid(conv3x3(T))``
  normalised to sum one over positions; each pixel's channel vector is L2-normalised;
  ``L_spa = mean_b sum_hw rho_bhw * mean_c (S_hat - T_hat)^2``, at most ``4 / C``.

The attention modules live here, outside the encoders, are shared by both directions and
are trained by the same optimiser. Their input is the detached teacher map, so no
gradient of a direction's term reaches its teacher branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEMANTIC_LEVELS = (2, 3, 4)
SPATIAL_LEVELS = (0, 1, 2)
EPS = 1e-6


class ChannelAttention(nn.Module):
    """Teacher ``[B, C, H, W]`` -> channel weights ``[B, C]`` summing to one."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, teacher: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.mlp(teacher.mean(dim=(2, 3))))
        return weights / weights.sum(dim=1, keepdim=True)


class SpatialAttention(nn.Module):
    """Teacher ``[B, C, H, W]`` -> position weights ``[B, H*W]`` summing to one."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=3, padding=1)

    def forward(self, teacher: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.conv(teacher)).flatten(1)  # flatten, not squeeze: batch 1 safe
        return weights / weights.sum(dim=1, keepdim=True)


def semantic_distillation(student: torch.Tensor, teacher: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Channel-weighted distance of space-normalised maps ``[B,C,H,W]``; ``rho`` ``[B,C]``."""
    s = F.normalize(student.flatten(2), dim=2, eps=EPS)
    t = F.normalize(teacher.flatten(2), dim=2, eps=EPS)
    return (rho * (s - t).pow(2).mean(dim=2)).sum(dim=1).mean()


def spatial_distillation(student: torch.Tensor, teacher: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Position-weighted distance of channel-normalised maps ``[B,C,H,W]``; ``rho`` ``[B,H*W]``."""
    s = F.normalize(student.flatten(2), dim=1, eps=EPS)
    t = F.normalize(teacher.flatten(2), dim=1, eps=EPS)
    return (rho * (s - t).pow(2).mean(dim=1)).sum(dim=1).mean()


class DAMD(nn.Module):
    """Symmetric semantic + spatial distillation between two branches' level maps."""

    def __init__(self, level_channels: tuple[int, ...], reduction: int = 16):
        super().__init__()
        self.channel_attention = nn.ModuleList(ChannelAttention(level_channels[i], reduction) for i in SEMANTIC_LEVELS)
        self.spatial_attention = nn.ModuleList(SpatialAttention(level_channels[i]) for i in SPATIAL_LEVELS)

    def one_way(
        self, student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(semantic, spatial) loss distilling ``student`` towards the detached ``teacher``."""
        semantic = student[0].new_zeros(())
        for attention, level in zip(self.channel_attention, SEMANTIC_LEVELS):
            target = teacher[level].detach()
            semantic = semantic + semantic_distillation(student[level], target, attention(target))
        spatial = student[0].new_zeros(())
        for attention, level in zip(self.spatial_attention, SPATIAL_LEVELS):
            target = teacher[level].detach()
            spatial = spatial + spatial_distillation(student[level], target, attention(target))
        return semantic, spatial

    def forward(
        self, features_a: tuple[torch.Tensor, ...], features_b: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total symmetric loss and its parts, from the five level maps of each branch."""
        sem_ab, spa_ab = self.one_way(features_a, features_b)
        sem_ba, spa_ba = self.one_way(features_b, features_a)
        semantic, spatial = sem_ab + sem_ba, spa_ab + spa_ba
        return semantic + spatial, {"damd_semantic": semantic, "damd_spatial": spatial}
