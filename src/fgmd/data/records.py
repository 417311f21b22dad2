"""The unit every dataset format is parsed into: one :class:`Record` per object/scene."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass(frozen=True)
class Record:
    """One object seen by up to two modalities.

    Attributes:
        id: unique identifier within the dataset (e.g. ``Forest_12``).
        labels: class indices (one for single-label data, several for multi-label).
        paths: image file per modality; a modality the object was not imaged in is absent.
        split: split name as written in the dataset (``train``, ``query``, ...).
        source: where the record was defined, ``file:line``, for error messages.
        group: records sharing a non-empty group are near-duplicates (the same ship, the
            same MRSSID scene number); a group seen in two splits is reported as possible leakage.
    """

    id: str
    labels: tuple[int, ...]
    paths: dict[str, Path] = field(hash=False)
    split: str
    source: str = ""
    group: str = ""

    def has(self, modality: str) -> bool:
        """Whether the object has an image of ``modality``."""
        return modality in self.paths


def multi_hot(records: list[Record], num_classes: int) -> torch.Tensor:
    """Labels of ``records`` as a float multi-hot matrix ``[N, num_classes]``."""
    labels = torch.zeros(len(records), num_classes)
    for row, record in enumerate(records):
        labels[row, list(record.labels)] = 1.0
    return labels
