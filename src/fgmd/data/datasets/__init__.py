"""Dataset formats. :func:`build_dataset` picks the format named by ``data.format``."""

from __future__ import annotations

from fgmd.config import DataConfig
from fgmd.data.datasets.base import CrossModalDataset, DataFormatError, DatasetNotFoundError, ModalityImages
from fgmd.data.datasets.folder import PairedFolderDataset
from fgmd.data.transforms import ModalityTransform

FORMATS = {"folder": PairedFolderDataset}


def build_dataset(
    data: DataConfig, split: str, transforms: dict[str, ModalityTransform] | None = None
) -> CrossModalDataset:
    """The ``split`` of the dataset described by ``data``."""
    if data.format not in FORMATS:
        raise ValueError(f"data.format {data.format!r} is not one of {sorted(FORMATS)}")
    if not data.root:
        raise ValueError("data.root is not set: point it at the dataset folder")
    return FORMATS[data.format](
        data.root, split, data.modalities, transforms=transforms, cache_images=data.cache_images
    )


__all__ = [
    "CrossModalDataset",
    "DataFormatError",
    "DatasetNotFoundError",
    "ModalityImages",
    "PairedFolderDataset",
    "build_dataset",
]
