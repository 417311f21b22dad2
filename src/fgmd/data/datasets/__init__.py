"""Dataset formats. :func:`build_dataset` picks the format named by ``data.format``.

One module per on-disk format, each a :class:`FormatDataset` registered in :data:`FORMATS`:

- ``folder``  images/<modality>/<id>.<ext> + pairs.csv (EuroSAT benchmark, demo data)
- ``mrssid``  FSISR layout: images/MS_<id>.jpg, images/FC_<id>.jpg, <split>.txt one-hot lists
- ``vais``    the lists written by ``fgmd prepare vais`` from VAIS's annotations.txt
- ``csv``     one CSV with an explicit image path per modality (your own data)
"""

from __future__ import annotations

from fgmd.config import DataConfig
from fgmd.data.datasets.base import (
    CrossModalDataset,
    DatasetNotFoundError,
    FormatDataset,
    ModalityImages,
)
from fgmd.data.datasets.csv_table import CSVDataset
from fgmd.data.datasets.folder import PairedFolderDataset
from fgmd.data.datasets.mrssid import MRSSIDDataset
from fgmd.data.datasets.vais import VAISDataset
from fgmd.data.issues import DataFormatError
from fgmd.data.transforms import ModalityTransform

FORMATS: dict[str, type[FormatDataset]] = {
    "folder": PairedFolderDataset,
    "mrssid": MRSSIDDataset,
    "vais": VAISDataset,
    "csv": CSVDataset,
}


def build_dataset(
    data: DataConfig, split: str, transforms: dict[str, ModalityTransform] | None = None
) -> CrossModalDataset:
    """The ``split`` of the dataset described by ``data``, read as ``data.modality.*`` says."""
    from fgmd.data.radiometry import build_readers

    if data.format not in FORMATS:
        raise ValueError(f"data.format {data.format!r} is not one of {sorted(FORMATS)}")
    if not data.root:
        raise ValueError("data.root is not set: point it at the dataset folder")
    return FORMATS[data.format].from_config(
        data, split, transforms=transforms, reader=build_readers(data), cache_images=data.cache_images
    )


__all__ = [
    "FORMATS",
    "CSVDataset",
    "CrossModalDataset",
    "DataFormatError",
    "DatasetNotFoundError",
    "FormatDataset",
    "MRSSIDDataset",
    "ModalityImages",
    "PairedFolderDataset",
    "VAISDataset",
    "build_dataset",
]
