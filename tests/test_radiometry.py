"""Band selection, percentile scaling, invert and histogram equalisation (fgmd.data.radiometry)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fgmd.config import ConfigError, ModalityConfig, load_config
from fgmd.data.radiometry import ModalityReader, equalize_histogram, percentile_bounds, percentile_stretch

tifffile = pytest.importorskip("tifffile")  # optional dependency fgmd[tiff]


def test_percentile_stretch_formula():
    image = torch.tensor([[[0.0, 0.5], [1.0, 2.0]], [[10.0, 20.0], [30.0, 40.0]]])
    out = percentile_stretch(image, [0.5, 10.0], [1.5, 30.0])
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))
    assert torch.allclose(out[1], torch.tensor([[0.0, 0.5], [1.0, 1.0]]))


def test_percentile_bounds_are_seeded_per_band_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / f"x{i}.tif"
        tifffile.imwrite(path, rng.integers(0, 65536, (3, 10, 10), dtype=np.uint16), photometric="minisblack")
        paths.append(path)
    reader = ModalityReader("ms", ModalityConfig(channels=2, bands=[2, 0]), radiometry=False)
    low, high = percentile_bounds(paths, reader, [2, 98], sample=100, seed=0)  # every image
    stack = np.stack([reader(p).numpy() for p in paths])  # [6, 2, 10, 10]
    for b in range(2):
        assert low[b] == pytest.approx(np.percentile(stack[:, b], 2))
        assert high[b] == pytest.approx(np.percentile(stack[:, b], 98))
    a = percentile_bounds(paths, reader, [2, 98], sample=3, seed=1)
    assert a == percentile_bounds(list(reversed(paths)), reader, [2, 98], sample=3, seed=1)  # order-independent
    assert a != (low, high)


def reference_equalize(band: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist on uint8, written out: (cdf - cdf_min) * 255 / (N - cdf_min)."""
    hist = np.bincount(band.ravel(), minlength=256)
    cdf = hist.cumsum()
    cdf_min = cdf[hist > 0][0]
    return np.round((cdf[band] - cdf_min) * 255.0 / (band.size - cdf_min)).astype(np.uint8)


def test_equalize_matches_the_opencv_formula():
    band = np.random.default_rng(1).integers(40, 120, (1, 16, 16)).astype(np.uint8)
    out = equalize_histogram(torch.from_numpy(band).float() / 255)
    assert np.array_equal(np.round(out.numpy() * 255).astype(np.uint8), reference_equalize(band))
    flat = torch.full((1, 4, 4), 0.3)
    assert torch.equal(equalize_histogram(flat), flat)  # constant band unchanged


def test_reader_order_bands_scaling_invert(tmp_path):
    path = tmp_path / "x.tif"
    data = np.stack([np.full((4, 4), v, np.float32) for v in (0.2, 0.6, 0.9)])
    data[0, 0, 0] = 0.0
    tifffile.imwrite(path, data, photometric="minisblack")  # 3 pages of 4x4: bands first
    mod = ModalityConfig(
        channels=2, bands=[1, 0], scaling="percentile", scale_low=[0.5, 0.0], scale_high=[0.7, 0.4], invert=True
    )
    out = ModalityReader("x", mod)(path)
    assert out.shape == (2, 4, 4)
    assert (
        out[0, 1, 1] == pytest.approx(1 - 0.5)
        and out[1, 1, 1] == pytest.approx(1 - 0.5)
        and out[1, 0, 0] == pytest.approx(1.0)
    )
    with pytest.raises(ConfigError, match="scale_low/scale_high are not set"):
        ModalityReader("x", ModalityConfig(channels=2, scaling="percentile"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.modality.ms={channels: 3, bands: [0, 1]}", "selects 2 band(s) but channels is 3"),
        ("data.modality.ms.bands=[-1, 0, 1]", "0-based band indices"),
        ("data.modality.ms.scaling=minmax", "scaling must be one of none, percentile"),
        ("data.modality.ms.percentiles=[98, 2]", "0 <= low < high <= 100"),
        ("data.modality.ms.scale_low=[0, 0, 0]", "set together"),
        ("data.modality.ms={scale_low: [0, 0, 0], scale_high: [1, 0, 1]}", "every scale_high must exceed"),
        ("data.format=hdf5", "data.format must be one of folder, mrssid, vais, csv"),
        ("data.format=mrssid", "data.mrssid.prefixes has no prefix for modality 'ms'"),
        ("data.class_names=[a, a]", "duplicates"),
        ("data.csv.path_columns={sar: s}", "data.csv.path_columns.sar"),
    ],
)
def test_new_config_fields_are_validated(override, message):
    base = ["data.modalities=[ms, pan]"]
    if override == "data.format=mrssid":
        base.append("data.mrssid.prefixes={pan: FC_}")
    if override.startswith("data.csv"):
        base.append("data.format=csv")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [*base, override])
