"""Per-modality image transforms: square resize, crop, horizontal flip, normalisation.

Training (docs/DESIGN.md §2): resize to ``resize``² → random ``image_size``² crop → random
horizontal flip. Evaluation: resize → centre crop. Images are resized to a square (not by
the shorter side) so an elongated target such as a ship is never cropped away.

The crop/flip parameters can be drawn once and applied to both images of a pair, keeping
co-registered MS/PAN views aligned for the spatial distillation term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from fgmd.config import DataConfig, ModalityConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODE = "bilinear with antialiasing, to a square (aspect ratio not kept)"


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` images to ``[..., C, size, size]`` (see :data:`RESIZE_MODE`)."""
    return TF.resize(images, [size, size], antialias=True)


@dataclass(frozen=True)
class CropParams:
    """Where to crop the resized image and whether to mirror it."""

    top: int
    left: int
    flip: bool


def normalisation(modality: ModalityConfig) -> tuple[list[float], list[float]]:
    """Per-band mean and std for ``modality``: its own, else ImageNet (3 bands) or their average."""
    channels = modality.channels
    mean = modality.mean or (list(IMAGENET_MEAN) if channels == 3 else [sum(IMAGENET_MEAN) / 3] * channels)
    std = modality.std or (list(IMAGENET_STD) if channels == 3 else [sum(IMAGENET_STD) / 3] * channels)
    return list(mean), list(std)


class ModalityTransform:
    """Turns a decoded image ``[C, H, W]`` in [0, 1] into a normalised ``[C, S, S]`` tensor."""

    def __init__(self, modality: ModalityConfig, image_size: int, resize: int, train: bool, hflip: bool = True):
        self.image_size = image_size
        self.resize = resize
        self.train = train
        self.hflip = hflip and train
        self.channels = modality.channels
        self.mean, self.std = normalisation(modality)

    def sample_params(self, generator: torch.Generator | None = None) -> CropParams:
        """Crop/flip parameters: random when training, the centre crop otherwise."""
        slack = self.resize - self.image_size
        if not self.train:
            return CropParams(slack // 2, slack // 2, False)
        top, left = torch.randint(0, slack + 1, (2,), generator=generator).tolist()
        flip = self.hflip and bool(torch.rand((), generator=generator) < 0.5)
        return CropParams(top, left, flip)

    def __call__(self, image: torch.Tensor, params: CropParams | None = None) -> torch.Tensor:
        """Transform ``image`` ``[C, H, W]``; ``params`` as drawn by :meth:`sample_params`."""
        if image.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} band(s), got an image with {image.shape[0]}")
        params = params or self.sample_params()
        out = resize_square(image, self.resize)
        out = out[:, params.top : params.top + self.image_size, params.left : params.left + self.image_size]
        if params.flip:
            out = out.flip(-1)
        return TF.normalize(out.contiguous(), self.mean, self.std)


def build_transforms(data: DataConfig, train: bool) -> dict[str, ModalityTransform]:
    """One :class:`ModalityTransform` per modality of ``data``."""
    return {
        name: ModalityTransform(data.modality_config(name), data.image_size, data.resize, train, data.hflip)
        for name in data.modalities
    }
