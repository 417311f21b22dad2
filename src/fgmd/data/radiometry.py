"""Per-modality band selection and radiometric transforms on decoded ``[C, H, W]`` tensors.

A :class:`ModalityReader` turns a file into the tensor the geometric transforms
(``transforms.py``) receive, as ``data.modality.<name>`` describes, in this order:

1. decode with :func:`fgmd.data.io.read_image` (uint8 / 255, uint16 / 65535, float as stored),
   keeping ``bands`` (0-based, in the order given; ``[]`` keeps all);
2. check the band count equals ``channels`` (an error naming the file otherwise);
3. ``scaling: percentile``: per band ``b``,
   ``y_b = clip((x_b - low_b) / (high_b - low_b), 0, 1)`` with ``low_b``/``high_b`` =
   ``scale_low[b]``/``scale_high[b]`` (see :func:`percentile_bounds` for how they are computed);
4. ``invert``: ``y = 1 - x``;
5. ``equalize``: per band, histogram equalisation over 256 levels (:func:`equalize_histogram`).

Every step is deterministic, so cached images (``data.cache_images``) are the same as
freshly read ones. Images of different native sizes per modality (PAN is often 4x the MS
size) need nothing here: ``transforms.py`` resizes every image to ``data.resize`` squared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fgmd.config import ConfigError, DataConfig, ModalityConfig
from fgmd.data.io import ImageReadError, decode_image, read_image

__all__ = [
    "ModalityReader",
    "build_readers",
    "equalize_histogram",
    "invert",
    "percentile_bounds",
    "percentile_stretch",
    "MAX_PIXELS_PER_IMAGE",
]

MAX_PIXELS_PER_IMAGE = 65536  # pixels an image contributes to the percentile sample (random subset above it)
_LEVELS = 256


def percentile_stretch(image: torch.Tensor, low: Sequence[float], high: Sequence[float]) -> torch.Tensor:
    """``clip((x_b - low_b) / (high_b - low_b), 0, 1)`` for every band ``b`` of ``image [C, H, W]``."""
    lo = torch.as_tensor(low, dtype=image.dtype).view(-1, 1, 1)
    hi = torch.as_tensor(high, dtype=image.dtype).view(-1, 1, 1)
    if lo.shape[0] != image.shape[0] or hi.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} band(s) but {lo.shape[0]} low / {hi.shape[0]} high bounds")
    return ((image - lo) / (hi - lo)).clamp_(0.0, 1.0)


def invert(image: torch.Tensor) -> torch.Tensor:
    """``1 - x`` (for images in [0, 1])."""
    return 1.0 - image


def equalize_histogram(image: torch.Tensor) -> torch.Tensor:
    """Per-band histogram equalisation of ``image [C, H, W]`` in [0, 1], as OpenCV's ``equalizeHist``.

    Each band is quantised to ``q = round(clip(x, 0, 1) * 255)``; with ``cdf`` the cumulative
    histogram of ``q``, ``N`` the pixel count and ``cdf_min`` the cdf at the lowest level
    present, ``y = (cdf[q] - cdf_min) / (N - cdf_min)`` (in [0, 1]). A constant band
    (``N = cdf_min``) is returned unchanged.
    """
    out = torch.empty_like(image)
    for b in range(image.shape[0]):
        q = (image[b].clamp(0.0, 1.0) * (_LEVELS - 1)).round().long()
        cdf = torch.bincount(q.flatten(), minlength=_LEVELS).cumsum(0)
        n = q.numel()
        cdf_min = int(cdf[q.min()])
        if n == cdf_min:
            out[b] = image[b]
            continue
        out[b] = ((cdf[q] - cdf_min).to(image.dtype) / (n - cdf_min)).clamp_(0.0, 1.0)
    return out


class ModalityReader:
    """``reader(path) -> [C, H, W]`` float32 for one modality (see the module docs for the steps).

    With ``radiometry=False`` only band selection and the band-count check are done (what
    the percentile statistics and ``fgmd check-data`` read).
    """

    def __init__(self, name: str, modality: ModalityConfig, radiometry: bool = True):
        self.name = name
        self.bands = list(modality.bands) or None
        self.channels = modality.channels
        self.stretch = None
        self.invert = modality.invert and radiometry
        self.equalize = modality.equalize and radiometry
        if radiometry and modality.scaling == "percentile":
            if not modality.scale_low:
                raise ConfigError(
                    f"data.modality.{name}.scaling is 'percentile' but scale_low/scale_high are not set: "
                    "`fgmd train` computes them on the training split and stores them in the run's config "
                    "(best.pt, config.yaml); `fgmd check-data` prints them"
                )
            self.stretch = (list(modality.scale_low), list(modality.scale_high))

    def __call__(self, path: str | Path) -> torch.Tensor:
        return self._process(read_image(path, self.bands), path)

    def decode(self, data: bytes, name: str) -> torch.Tensor:
        """The same as calling the reader on a file holding ``data`` (kept in memory; ``name``
        labels errors)."""
        return self._process(decode_image(data, name, self.bands), name)

    def _process(self, image: torch.Tensor, path: str | Path) -> torch.Tensor:
        if image.shape[0] != self.channels:
            selected = "after band selection " if self.bands else ""
            raise ImageReadError(
                path,
                f"has {image.shape[0]} band(s) {selected}but data.modality.{self.name}.channels is "
                f"{self.channels} (set data.modality.{self.name}.channels, or .bands to pick bands, e.g. [0])",
            )
        if self.stretch is not None:
            image = percentile_stretch(image, *self.stretch)
        if self.invert:
            image = invert(image)
        if self.equalize:
            image = equalize_histogram(image)
        return image


def build_readers(data: DataConfig, radiometry: bool = True) -> dict[str, ModalityReader]:
    """One :class:`ModalityReader` per modality of ``data``."""
    return {m: ModalityReader(m, data.modality_config(m), radiometry) for m in data.modalities}


def percentile_bounds(
    paths: Sequence[str | Path],
    reader: Callable[[str | Path], torch.Tensor],
    percentiles: Sequence[float],
    sample: int,
    seed: int,
    progress: Callable | None = None,
) -> tuple[list[float], list[float]]:
    """Per-band ``(low, high)`` percentiles of a seeded sample of images.

    ``sample`` images are drawn without replacement from ``paths`` (all of them when fewer)
    with ``numpy.random.default_rng(seed)``; each is read with ``reader`` (band selection,
    no scaling); an image with more than :data:`MAX_PIXELS_PER_IMAGE` pixels contributes that
    many pixel positions drawn without replacement by the same generator. ``low_b`` and
    ``high_b`` are ``numpy.nanpercentile`` (linear interpolation) of all the sampled values
    of band ``b`` at ``percentiles[0]`` and ``percentiles[1]``. When ``high_b <= low_b``
    (a constant band), ``high_b = low_b + 1`` so the stretch stays defined.
    """
    if not paths:
        raise ValueError("no images to compute percentile bounds on")
    rng = np.random.default_rng(seed)
    order = sorted(str(p) for p in paths)
    picked = rng.choice(len(order), size=sample, replace=False) if len(order) > sample else range(len(order))
    chosen = [order[int(i)] for i in sorted(picked)]
    per_band: list[list[np.ndarray]] = []
    for path in progress(chosen) if progress else chosen:
        image = reader(path).numpy()
        flat = image.reshape(image.shape[0], -1)
        if flat.shape[1] > MAX_PIXELS_PER_IMAGE:
            keep = np.sort(rng.choice(flat.shape[1], size=MAX_PIXELS_PER_IMAGE, replace=False))
            flat = flat[:, keep]
        if not per_band:
            per_band = [[] for _ in range(flat.shape[0])]
        for b, values in enumerate(flat):
            per_band[b].append(values)
    low, high = [], []
    for band, parts in enumerate(per_band):
        values = np.concatenate(parts)
        if not np.isfinite(values).any():
            raise ValueError(f"band {band} has no finite value in the {len(chosen)} sampled image(s)")
        lo, hi = np.nanpercentile(values, list(percentiles))
        lo, hi = float(lo), float(hi)
        low.append(lo)
        high.append(hi if hi > lo else lo + 1.0)
    return low, high
