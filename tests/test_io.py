"""Tests of image decoding (fgmd.data.io.read_image) and its error messages."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgmd.data import io as image_io
from fgmd.data.io import ImageReadError, decode_image, read_image

tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _expect_error(path: Path, match: str | None = None, **kwargs) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    err = info.value
    assert str(path) in str(err), str(err)  # the message names the file
    assert err.path == str(path)
    assert isinstance(err, OSError)
    if match is not None:
        assert match.lower() in str(err).lower(), str(err)
    return err


# --------------------------------------------------------------------------- Pillow formats


def test_png_grey(tmp_path: Path):
    path = tmp_path / "g.png"
    Image.fromarray(GREY).save(path)
    x = read_image(path)
    assert x.dtype == torch.float32 and x.shape == (1, 12, 10)
    assert torch.equal(x[0], torch.from_numpy(GREY.astype(np.float32) / 255))


def test_png_rgb_channel_order(tmp_path: Path):
    path = tmp_path / "c.PNG"  # extension case does not matter
    Image.fromarray(RGB).save(path, format="PNG")
    x = read_image(path)
    assert x.shape == (3, 12, 10)
    assert torch.equal(x, torch.from_numpy(RGB.transpose(2, 0, 1).astype(np.float32) / 255))


def test_png_16bit_scaled_by_65535(tmp_path: Path):
    a = np.array([[0, 1000, 65535], [30000, 40000, 5]], dtype=np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(a).save(path)
    x = read_image(path)
    assert x.shape == (1, 2, 3)
    assert torch.allclose(x[0], torch.from_numpy(a.astype(np.float32) / 65535))
    assert x.max() == 1.0


def test_jpeg_rgb_and_grey(tmp_path: Path):
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    rgb = np.stack([smooth, smooth.T, np.full_like(smooth, 128)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(smooth).save(tmp_path / "b.jpeg", quality=95)
    x = read_image(tmp_path / "a.jpg")
    assert x.shape == (3, 16, 16)
    assert (x - torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0).float()).abs().mean() < 0.02
    assert read_image(tmp_path / "b.jpeg").shape == (1, 16, 16)


def test_bmp(tmp_path: Path):
    Image.fromarray(RGB).save(tmp_path / "a.bmp")
    assert torch.equal(read_image(tmp_path / "a.bmp"), read_image(_save(tmp_path / "a.png", RGB)))


def _save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_palette_becomes_rgb(tmp_path: Path):
    img = Image.fromarray(RGB).quantize(colors=8)
    img.save(tmp_path / "p.png")
    x = read_image(tmp_path / "p.png")
    expected = np.asarray(img.convert("RGB")).transpose(2, 0, 1) / 255.0
    assert x.shape == (3, 12, 10)
    assert torch.allclose(x, torch.from_numpy(expected).float())


def test_alpha_dropped_only_when_opaque(tmp_path: Path):
    rgba = np.concatenate([RGB, np.full((12, 10, 1), 255, np.uint8)], axis=-1)
    x = read_image(_save(tmp_path / "opaque.png", rgba))
    assert torch.equal(x, torch.from_numpy(RGB.transpose(2, 0, 1).astype(np.float32) / 255))
    la = np.stack([GREY, np.full_like(GREY, 255)], axis=-1)
    assert read_image(_save(tmp_path / "la.png", la)).shape == (1, 12, 10)
    rgba[0, 0, 3] = 100
    _expect_error(_save(tmp_path / "transparent.png", rgba), match="transparent")


def test_band_selection_png(tmp_path: Path):
    x = read_image(_save(tmp_path / "c.png", RGB), bands=[2, 0])
    assert torch.equal(x, torch.from_numpy(RGB[..., [2, 0]].transpose(2, 0, 1).astype(np.float32) / 255))


# --------------------------------------------------------------------------- TIFF


def test_tiff_multiband_bands_last_with_selection(tmp_path: Path):
    cube = RNG.integers(0, 65536, (20, 18, 5), dtype=np.uint16)  # stored as a page stack by tifffile
    path = tmp_path / "cube.tif"
    tifffile.imwrite(path, cube)
    x = read_image(path)
    assert x.shape == (5, 20, 18)
    assert torch.allclose(x, torch.from_numpy(cube.transpose(2, 0, 1) / 65535.0).float())
    y = read_image(path, bands=[4, 0])
    assert torch.equal(y, x[[4, 0]])


def test_tiff_planar_and_contig(tmp_path: Path):
    cube = RNG.integers(0, 256, (4, 20, 18), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tiff", cube, photometric="minisblack", planarconfig="separate")
    hwc = cube.transpose(1, 2, 0)
    tifffile.imwrite(tmp_path / "contig.tif", hwc, photometric="minisblack", planarconfig="contig")
    # a stack of 4 pages, axes QYX: the first axis (4) is <= 16 and smaller than 20 and 18 -> bands
    tifffile.imwrite(tmp_path / "stack.tif", cube, photometric="minisblack")
    expected = torch.from_numpy(cube / 255.0).float()
    for name in ("planar.tiff", "contig.tif", "stack.tif"):
        assert torch.allclose(read_image(tmp_path / name), expected), name


def test_tiff_rgb_grey_and_float(tmp_path: Path):
    tifffile.imwrite(tmp_path / "rgb.tif", RGB, photometric="rgb")
    expected = torch.from_numpy(RGB.transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.equal(read_image(tmp_path / "rgb.tif"), expected)
    tifffile.imwrite(tmp_path / "grey.tif", GREY)
    assert read_image(tmp_path / "grey.tif").shape == (1, 12, 10)
    reflectance = RNG.normal(0.0, 2.0, (3, 8, 9)).astype(np.float32)  # float is left as stored
    tifffile.imwrite(tmp_path / "float.tif", reflectance, photometric="minisblack", planarconfig="separate")
    assert torch.equal(read_image(tmp_path / "float.tif"), torch.from_numpy(reflectance))


def test_tiff_big_endian_uint16(tmp_path: Path):
    a = np.array([[0, 65535], [256, 1]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "be.tif", a, byteorder=">")
    assert torch.allclose(read_image(tmp_path / "be.tif")[0], torch.from_numpy(a / 65535.0).float())


def test_tiff_unsupported_sample_type(tmp_path: Path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((4, 4), np.int16))
    _expect_error(tmp_path / "s.tif", match="int16")


def test_tiff_without_tifffile(tmp_path: Path, monkeypatch):
    path = tmp_path / "cube.tif"
    tifffile.imwrite(path, GREY)
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile now raises ImportError
    _expect_error(path, match="pip install fgmd[tiff]")


def test_tiff_corrupt(tmp_path: Path):
    path = tmp_path / "junk.tif"
    path.write_bytes(RNG.integers(0, 256, 300, dtype=np.uint8).tobytes())
    _expect_error(path)


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path):
    _expect_error(tmp_path / "nope.png", match="not found")


def test_directory_is_not_an_image(tmp_path: Path):
    (tmp_path / "dir.png").mkdir()
    _expect_error(tmp_path / "dir.png")


def test_truncated_png(tmp_path: Path):
    big = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _save(tmp_path / "full.png", big).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path)


def test_truncated_jpeg(tmp_path: Path):
    big = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path)


def test_random_bytes_named_png(tmp_path: Path):
    path = tmp_path / "noise.png"
    path.write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    _expect_error(path)


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _expect_error(path)


def test_unsupported_extension(tmp_path: Path):
    path = tmp_path / "image.txt"
    path.write_text("hello")
    _expect_error(path, match="extension")


@pytest.mark.parametrize("bands", [[3], [-1], [0, 5], []])
def test_bad_band_index(tmp_path: Path, bands):
    path = _save(tmp_path / "c.png", RGB)
    err = _expect_error(path, bands=bands)
    if bands and bands != [-1]:
        assert "3 band" in str(err)


def test_error_pickles():
    err = ImageReadError("/x/y.png", "broken")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, ImageReadError) and back.path == "/x/y.png" and str(back) == str(err)


def test_band_selection_accepts_arrays(tmp_path: Path):
    path = _save(tmp_path / "c.png", RGB)
    assert torch.equal(read_image(path, bands=np.array([1])), read_image(path, bands=(1,)))
    assert torch.equal(read_image(path, bands=torch.tensor([1])), read_image(path)[[1]])


# --------------------------------------------------------------------------- in memory


def test_decode_image_equals_read_image(tmp_path: Path):
    """Bytes decode exactly as the file they came from (PNG 8/16-bit, JPEG, multi-band TIFF)."""
    files = {}
    Image.fromarray(RGB).save(files.setdefault("rgb.png", tmp_path / "rgb.png"))
    Image.fromarray(GREY.astype(np.uint16) * 257).save(files.setdefault("grey16.png", tmp_path / "grey16.png"))
    Image.fromarray(RGB).save(files.setdefault("rgb.jpg", tmp_path / "rgb.jpg"), quality=90)
    bands = RNG.integers(0, 65536, (12, 10, 5), dtype=np.uint16)
    tifffile.imwrite(files.setdefault("ms.tif", tmp_path / "ms.tif"), bands)
    for name, path in files.items():
        expected = read_image(path)
        got = decode_image(path.read_bytes(), "upload-" + name)
        assert torch.equal(got, expected), name
    assert torch.equal(
        decode_image(files["ms.tif"].read_bytes(), "x", bands=[4, 0]), read_image(files["ms.tif"], [4, 0])
    )
    assert decode_image(files["ms.tif"].read_bytes(), "x").shape == (5, 12, 10)


def test_decode_image_errors_name_the_upload():
    for data, match in (
        (b"", "empty file"),
        (b"hello", "not an image in a supported format"),
        (b"II*\x00garbage", "TIFF"),
    ):
        with pytest.raises(ImageReadError, match=match) as info:
            decode_image(data, "my-upload.png")
        assert info.value.path == "my-upload.png"


def test_tiff_over_the_sample_limit_is_refused_before_decoding(tmp_path: Path, monkeypatch):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((20, 20, 4), dtype=np.uint16))
    monkeypatch.setattr(image_io, "MAX_TIFF_SAMPLES", 20 * 20 * 4 - 1)
    _expect_error(path, "image too large")
    with pytest.raises(ImageReadError, match="image too large"):
        decode_image(path.read_bytes(), "big.tif")
