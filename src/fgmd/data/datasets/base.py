"""Dataset base classes shared by every on-disk format.

A format module (``folder.py``, ...) only parses its layout into :class:`Record` objects;
everything that turns records into tensors lives here, so training and evaluation run the
same code whatever the format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from fgmd.data.io import read_image
from fgmd.data.records import Record, multi_hot
from fgmd.data.transforms import ModalityTransform


class DatasetNotFoundError(FileNotFoundError):
    """The dataset root or one of its index files does not exist; the message shows the layout."""

    def __init__(self, what: str, expected_layout: str):
        super().__init__(f"{what}\nExpected layout:\n{expected_layout}")


class DataFormatError(ValueError):
    """An index file of a dataset is malformed; the message names ``file:line``."""


ImageReader = Callable[[Path], torch.Tensor]


class CrossModalDataset(Dataset):
    """The pairs of one split of a two-modality dataset, as a map-style dataset.

    ``self[i]`` is ``{"image_<a>": [C_a,S,S], "image_<b>": [C_b,S,S], "label": [L],
    "index": i, "id": str}``; with ``transforms`` unset the images are the decoded
    ``[C,H,W]`` tensors in [0, 1]. Training transforms draw one crop/flip per pair and apply
    it to both images, so co-registered views stay aligned.

    ``records`` may hold objects imaged in one modality only (VAIS): they are not pairs,
    but they are still query/database items, available through :meth:`images`.
    """

    def __init__(
        self,
        records: Sequence[Record],
        modalities: Sequence[str],
        class_names: Sequence[str],
        transforms: dict[str, ModalityTransform] | None = None,
        reader: ImageReader = read_image,
        cache_images: bool = False,
    ):
        if len(modalities) != 2:
            raise ValueError(f"a cross-modal dataset needs two modalities, got {list(modalities)}")
        self.modalities = tuple(modalities)
        self.class_names = list(class_names)
        self.records = list(records)
        self.pairs = [r for r in self.records if all(r.has(m) for m in self.modalities)]
        self.labels = multi_hot(self.pairs, len(self.class_names))
        self.transforms = transforms
        self.reader = reader
        self._cache: dict[tuple[str, str], torch.Tensor] | None = {} if cache_images else None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, record: Record, modality: str) -> torch.Tensor:
        """Decoded image ``[C, H, W]`` of ``record`` in ``modality`` (cached when enabled)."""
        if self._cache is None:
            return self.reader(record.paths[modality])
        key = (record.id, modality)
        if key not in self._cache:
            self._cache[key] = self.reader(record.paths[modality])
        return self._cache[key]

    def pair_image(self, index: int, modality: str) -> torch.Tensor:
        """Transformed image of pair ``index`` in ``modality`` (its own random crop)."""
        image = self.load(self.pairs[index], modality)
        return self.transforms[modality](image) if self.transforms else image

    def __getitem__(self, index: int) -> dict:
        record = self.pairs[index]
        sample = {"label": self.labels[index], "index": index, "id": record.id}
        params = None
        if self.transforms:
            params = self.transforms[self.modalities[0]].sample_params()
        for modality in self.modalities:
            image = self.load(record, modality)
            if self.transforms:
                image = self.transforms[modality](image, params)
            sample[f"image_{modality}"] = image
        return sample

    def subset(self, indices: Sequence[int]) -> CrossModalDataset:
        """A dataset of the pairs at ``indices`` (same classes, transforms and reader)."""
        subset = CrossModalDataset(
            [self.pairs[i] for i in indices], self.modalities, self.class_names, self.transforms, self.reader
        )
        subset._cache = self._cache
        return subset

    def images(self, modality: str, transform: ModalityTransform | None = None) -> ModalityImages:
        """Every record of this split that has a ``modality`` image, paired or not."""
        if modality not in self.modalities:
            raise KeyError(f"unknown modality {modality!r}; this dataset has {list(self.modalities)}")
        records = [r for r in self.records if r.has(modality)]
        return ModalityImages(records, modality, self.num_classes, transform, self.reader)


class ModalityImages(Dataset):
    """The images of one modality, for encoding: ``self[i] = {"image": [C,S,S], "label": [L], "index": i, "id": str}``."""

    def __init__(
        self,
        records: Sequence[Record],
        modality: str,
        num_classes: int,
        transform: ModalityTransform | None = None,
        reader: ImageReader = read_image,
    ):
        self.records = list(records)
        self.modality = modality
        self.labels = multi_hot(self.records, num_classes)
        self.transform = transform
        self.reader = reader

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = self.reader(record.paths[self.modality])
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "label": self.labels[index], "index": index, "id": record.id}
