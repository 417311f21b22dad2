"""One image-to-tensor path per modality: read -> bands -> radiometry -> resize -> crop -> normalise.

A :class:`Preprocessor` is the only way fgmd turns an image file into an encoder input for
evaluation, ``fgmd.encode_files``, ``fgmd index``, ``fgmd search`` and the ONNX parity check;
training reads through the same :class:`~fgmd.data.radiometry.ModalityReader` and resizes and
normalises with the same functions of :mod:`fgmd.data.transforms` (batched on the training
device, see :mod:`fgmd.training.batches`). Its :meth:`Preprocessor.spec` is the complete,
versioned description stored in index encoder identities and ONNX sidecars, so an app (or a
later fgmd) can reproduce the input exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fgmd.config import DataConfig, ModalityConfig
from fgmd.data.radiometry import ModalityReader
from fgmd.data.transforms import RESIZE_MODE, ModalityTransform

# Version of the ``spec()`` layout. 1: decode, bands, scaling, invert, equalize, resize, crop, normalise.
SPEC_VERSION = 1


class Preprocessor:
    """``preprocessor(path) -> [C, S, S]`` float32 encoder input of one modality (evaluation crop).

    Args:
        name: the modality (its ``data.modality.<name>`` settings are ``modality``).
        modality: band selection, radiometry and normalisation settings.
        image_size: ``S``, the crop side; ``resize``: ``R``, the square the image is resized to first.

    Steps, in order: :func:`fgmd.data.io.read_image` (uint8 / 255, uint16 / 65535, float as
    stored), keep ``bands``, check the band count, percentile ``scaling``, ``invert``,
    ``equalize`` (``fgmd.data.radiometry``), resize to ``R``² (bilinear, antialiased, aspect
    ratio not kept), centre crop ``S``², ``(x - mean) / std`` per band (``fgmd.data.transforms``).
    """

    def __init__(self, name: str, modality: ModalityConfig, image_size: int, resize: int):
        self.name = name
        self.modality = modality
        self.reader = ModalityReader(name, modality)
        self.transform = ModalityTransform(modality, image_size, resize, train=False)

    @property
    def channels(self) -> int:
        return self.modality.channels

    def read(self, path: str | Path) -> torch.Tensor:
        """The decoded image after band selection and radiometry: ``[C, H, W]`` float32."""
        return self.reader(path)

    def __call__(self, path: str | Path) -> torch.Tensor:
        return self.transform(self.reader(path))

    def decode(self, data: bytes, name: str) -> torch.Tensor:
        """The decoded image of in-memory file bytes (``name`` labels errors), after band
        selection and radiometry: ``[C, H, W]``; ``self.transform`` of it is the encoder input."""
        return self.reader.decode(data, name)

    def spec(self) -> dict[str, Any]:
        """Everything that decides the encoder input, as plain JSON types."""
        mod, transform = self.modality, self.transform
        return {
            "version": SPEC_VERSION,
            "channels": mod.channels,
            "decode": "uint8 / 255, uint16 / 65535, float as stored",
            "bands": list(mod.bands),
            "scaling": mod.scaling,
            "scale_low": [float(v) for v in mod.scale_low] if mod.scaling == "percentile" else [],
            "scale_high": [float(v) for v in mod.scale_high] if mod.scaling == "percentile" else [],
            "invert": mod.invert,
            "equalize": mod.equalize,
            "resize": [transform.resize, transform.resize],
            "resize_mode": RESIZE_MODE,
            "center_crop": [transform.image_size, transform.image_size],
            "mean": [float(v) for v in transform.mean],
            "std": [float(v) for v in transform.std],
            "normalize": "(x - mean[c]) / std[c] per band",
        }


def build_preprocessor(data: DataConfig, modality: str) -> Preprocessor:
    """The :class:`Preprocessor` of ``modality`` under ``data``."""
    return Preprocessor(modality, data.modality_config(modality), data.image_size, data.resize)
