"""Image decoding: one file -> a ``[C, H, W]`` float32 tensor, or a clear error.

``read_image`` never returns a substitute image: a missing, truncated, corrupt or
unsupported file raises :class:`ImageReadError`, whose message names the file and what is
wrong (the FG-MD release silently replaced unreadable images by black ones).

Formats
    ``.png .jpg .jpeg .bmp`` (and ``.gif .webp .jp2`` when Pillow has the codec) are decoded
    by Pillow; ``.tif .tiff`` (including GeoTIFF, multi-band and planar files) by the
    optional package ``tifffile`` (``pip install fgmd[tiff]``). The extension picks the
    decoder; letter case does not matter.

Value scaling (the result is always float32)
    ``uint8`` -> ``/ 255``; ``uint16`` -> ``/ 65535`` (16-bit PNG and TIFF), so both land in
    [0, 1]; ``bool`` -> 0 or 1; floating-point data (float TIFF, Pillow mode ``F``) is kept
    as stored (not rescaled, not clipped: reflectances, NaN no-data values and all). Other
    sample types (signed or 32-bit integers, complex) are refused, because no scaling to
    [0, 1] is obviously right for them: convert them to uint8/uint16/float first.

Channels (Pillow modes)
    ``1`` and ``L`` -> 1 channel; ``I;16*`` (16-bit grey) -> 1 channel; ``RGB`` -> 3;
    ``P`` (palette) -> 3 (RGB, the palette is applied); ``CMYK`` and ``YCbCr`` -> 3 (converted
    to RGB). Alpha: ``LA``, ``RGBA``, ``PA`` and palettes with a transparent colour have their
    alpha channel **dropped when it is fully opaque** (every alpha value at its maximum); an
    image with any transparent or translucent pixel is refused, since the colour under a
    transparent pixel is undefined. 16-bit RGB PNGs are reduced to 8 bits by Pillow.

Axes (TIFF)
    2-D data is one band. 3-D data follows the axes tifffile reports: ``YXS`` (samples
    interleaved, the usual RGB/GeoTIFF ``PlanarConfiguration=1``) is bands-last; ``SYX``
    (``PlanarConfiguration=2``) and ``CYX`` are bands-first. Otherwise (for instance a stack
    of pages, axes ``QYX``/``IYX``) the rule is: **the first axis holds the bands when it is
    <= 16 and smaller than both other axes**; else the last axis holds the bands. Only the
    first series and its full-resolution level are read (GeoTIFF overviews are ignored).
    Data with more than 3 non-singleton axes is refused.

Size limit (decompression bombs)
    An image larger than ``max_pixels()`` (height x width; 64 megapixels unless the
    environment variable ``FGMD_MAX_PIXELS`` says otherwise, ``0`` for no limit) is refused
    from its header, before any pixel is decoded: a small file can hold a huge image, and one
    144-megapixel PNG decodes to 2.4 GB of float32. Pillow's own bomb check stays in force
    above ``2 * PIL.Image.MAX_IMAGE_PIXELS``; a TIFF whose first series holds more than
    :data:`MAX_TIFF_SAMPLES` samples (pixels times bands) is refused the same way.

In memory
    :func:`decode_image` decodes the bytes of a file (an upload) with the same rules,
    without writing them anywhere; the decoder is chosen from the data's signature (PNG,
    JPEG, TIFF, ...), the name only labels the messages.

Truncation detection relies on Pillow's default ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES =
False``; this module never changes that global.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ImageReadError",
    "decode_image",
    "read_image",
    "MAX_TIFF_SAMPLES",
    "max_pixels",
    "PILLOW_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
]

PILLOW_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".jp2"})
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
SUPPORTED_EXTENSIONS = PILLOW_EXTENSIONS | TIFF_EXTENSIONS

_MAX_BANDS_FIRST = 16
MAX_TIFF_SAMPLES = 1 << 30  # samples (pixels x bands) in a TIFF's first series: 4 GiB as float32

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
MAX_PIXELS_ENV = "FGMD_MAX_PIXELS"


def max_pixels() -> int:
    """The largest image (height x width) :func:`read_image` decodes; 0 means no limit.

    Raises ``ValueError`` when ``FGMD_MAX_PIXELS`` is not a number.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        return max(int(float(text)), 0)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r} is not a number of pixels") from None


def _check_size(path: str | Path, height: int, width: int) -> None:
    try:
        limit = max_pixels()
    except ValueError as error:
        raise ImageReadError(path, str(error)) from None
    if limit and height * width > limit:
        raise ImageReadError(
            path,
            f"{width}x{height} pixels ({height * width / 1e6:.1f} megapixels) is above fgmd's limit of "
            f"{limit / 1e6:.1f} megapixels; raise {MAX_PIXELS_ENV} to read it",
        )


class ImageReadError(OSError):
    """An image file could not be read. ``path`` is the file, ``reason`` what is wrong."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image '{self.path}': {reason}")

    def __reduce__(self):  # picklable with the two-argument constructor (DataLoader workers)
        return (type(self), (self.path, self.reason))

    def __str__(self) -> str:
        return f"cannot read image '{self.path}': {self.reason}"


def read_image(path: str | os.PathLike[str], bands: Sequence[int] | None = None) -> torch.Tensor:
    """Decode one image file into a ``[C, H, W]`` float32 tensor (see the module docs for rules).

    Args:
        path: the image file; the extension selects the decoder.
        bands: optional 0-based band (channel) indices to keep, in the order given
            (repeats allowed), applied after decoding; e.g. ``[3, 2, 1]``.

    Raises:
        ImageReadError: the file is missing, not a file, has an unsupported extension, is
            truncated or corrupt, has an unsupported pixel type or layout, has a
            transparent alpha channel, ``bands`` is invalid for it, or it is a TIFF and
            ``tifffile`` is not installed.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if not p.is_file():
        raise ImageReadError(p, "not a regular file")
    ext = p.suffix.lower()
    if ext in PILLOW_EXTENSIONS:
        array = _read_pillow(p, p)
    elif ext in TIFF_EXTENSIONS:
        array = _read_tiff(p, p)
    else:
        supported = " ".join(sorted(SUPPORTED_EXTENSIONS))
        ext_text = p.suffix or "(none)"
        raise ImageReadError(p, f"unsupported file extension {ext_text!r}; supported: {supported}")
    return _finish(p, array, bands)


_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def decode_image(data: bytes, name: str, bands: Sequence[int] | None = None) -> torch.Tensor:
    """Decode the bytes of an image file (e.g. an upload) into ``[C, H, W]`` float32, in memory.

    The rules are those of :func:`read_image`; TIFF is recognised by its signature, every
    other format is left to Pillow. ``name`` (the upload's file name) only labels errors.

    Raises:
        ImageReadError: empty, not an image, truncated or corrupt data, an image over the
            size limits, an unsupported layout or pixel type, or an invalid ``bands``.
    """
    if not data:
        raise ImageReadError(name, "empty file")
    if data[:4] in _TIFF_SIGNATURES:
        array = _read_tiff(name, io.BytesIO(data))
    else:
        array = _read_pillow(name, io.BytesIO(data))
    return _finish(name, array, bands)


def _finish(path: str | Path, array: np.ndarray, bands: Sequence[int] | None) -> torch.Tensor:
    if array.shape[1] == 0 or array.shape[2] == 0 or array.shape[0] == 0:
        raise ImageReadError(path, f"image has an empty dimension (shape {tuple(array.shape)})")
    if bands is not None:
        array = _select_bands(path, array, bands)
    return torch.from_numpy(_to_float(path, array))


# --------------------------------------------------------------------------- Pillow


def _read_pillow(path: str | Path, source: Path | BinaryIO) -> np.ndarray:
    """Decode ``source`` with Pillow; returns [C, H, W] in the file's sample type."""
    try:
        with warnings.catch_warnings():  # fgmd's own limit below replaces Pillow's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            _check_size(path, img.height, img.width)  # from the header, before decoding
            img.load()  # force the full decode: truncated/corrupt data fails here, not later
            return _pillow_to_array(path, img)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused by Pillow's decompression-bomb check ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image in a supported format (PNG, JPEG, TIFF, BMP, ...)") from exc
    except Exception as exc:  # noqa: BLE001 - every decoder failure becomes a named-file error
        reason = f"corrupt, truncated or not a supported image ({type(exc).__name__}: {exc})"
        raise ImageReadError(path, reason) from exc


def _drop_opaque_alpha(path: str | Path, img: Image.Image, colour_mode: str) -> Image.Image:
    alpha = np.asarray(img.getchannel("A"))
    full = np.iinfo(alpha.dtype).max if alpha.dtype.kind == "u" else 255
    if alpha.size and alpha.min() < full:
        n = int((alpha < full).sum())
        raise ImageReadError(
            path,
            f"mode {img.mode} has {n} transparent or translucent pixel(s); only fully opaque alpha "
            "channels are dropped (remove the alpha channel or flatten the image first)",
        )
    return img.convert(colour_mode)


def _pillow_to_array(path: str | Path, img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        img = _drop_opaque_alpha(path, img.convert("RGBA"), "RGB") if has_alpha else img.convert("RGB")
    elif mode == "PA":
        img = _drop_opaque_alpha(path, img.convert("RGBA"), "RGB")
    elif mode == "LA":
        img = _drop_opaque_alpha(path, img, "L")
    elif mode in ("RGBA", "RGBa"):
        img = _drop_opaque_alpha(path, img.convert("RGBA"), "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        if mode in ("LAB", "HSV"):
            raise ImageReadError(path, f"unsupported colour mode {mode}")
        img = img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode == "I" and getattr(img, "format", None) == "PNG":
        # 16-bit grey PNGs decode to mode I on some Pillow versions; values fit uint16.
        return np.asarray(img).astype(np.uint16)[None]
    elif mode not in ("L", "RGB", "F") and not mode.startswith("I;16"):
        raise ImageReadError(path, f"unsupported Pillow image mode {mode}")
    array = np.asarray(img)
    if array.ndim == 2:
        return array[None]
    return np.moveaxis(array, -1, 0)


# --------------------------------------------------------------------------- TIFF


def _read_tiff(path: str | Path, source: Path | BinaryIO) -> np.ndarray:
    try:
        import tifffile
    except ImportError as exc:
        raise ImageReadError(
            path, "reading TIFF files needs the optional package tifffile: pip install fgmd[tiff]"
        ) from exc
    try:
        with tifffile.TiffFile(source) as tif:
            if not tif.series:
                raise ImageReadError(path, "TIFF file holds no image")
            series = tif.series[0]
            samples = int(np.prod(series.shape, dtype=np.int64))
            if samples > MAX_TIFF_SAMPLES:
                raise ImageReadError(
                    path,
                    f"image too large: shape {tuple(series.shape)} is {samples} samples, the limit is {MAX_TIFF_SAMPLES}",
                )
            sizes = dict(zip(series.axes, series.shape))
            if "Y" in sizes and "X" in sizes:
                _check_size(path, sizes["Y"], sizes["X"])
            else:  # unnamed axes: the two largest
                _check_size(path, *sorted(series.shape)[-2:])
            array = series.asarray()
            axes = series.axes
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure becomes a named-file error
        hint = ""
        if "imagecodecs" in str(exc):
            hint = " (this compression needs the package imagecodecs: pip install imagecodecs)"
        reason = f"corrupt, truncated or unsupported TIFF ({type(exc).__name__}: {exc}){hint}"
        raise ImageReadError(path, reason) from exc
    return _tiff_to_chw(path, np.asarray(array), axes)


def _tiff_to_chw(path: str | Path, array: np.ndarray, axes: str) -> np.ndarray:
    if array.ndim > 3:  # drop singleton axes such as a lone sample or page axis
        keep = [i for i, n in enumerate(array.shape) if n != 1]
        if len(keep) < 2:
            keep = list(range(array.ndim - 2, array.ndim))
        axes = "".join(axes[i] for i in keep) if len(axes) == array.ndim else ""
        array = array.reshape([array.shape[i] for i in keep])
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        layout = f"shape {array.shape} (axes {axes or '?'})"
        raise ImageReadError(path, f"unsupported TIFF layout: {layout}; expected 2 or 3 axes")
    if axes.endswith("YXS"):
        return np.moveaxis(array, -1, 0)
    if axes in ("SYX", "CYX"):
        return array
    first, h, w = array.shape
    if first <= _MAX_BANDS_FIRST and first < h and first < w:
        return array
    return np.moveaxis(array, -1, 0)


# --------------------------------------------------------------------------- common


def _select_bands(path: str | Path, array: np.ndarray, bands: Sequence[int]) -> np.ndarray:
    if hasattr(bands, "tolist") and not isinstance(bands, (list, tuple)):  # numpy array / tensor
        bands = bands.tolist()
    if isinstance(bands, (str, bytes)) or not isinstance(bands, Sequence):
        raise ImageReadError(path, f"bands must be a list of 0-based band indices, got {bands!r}")
    index = list(bands)
    if not index:
        raise ImageReadError(path, "bands is empty; pass None to keep all bands")
    count = array.shape[0]
    for b in index:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
            raise ImageReadError(path, f"band index {b!r} is not an integer")
        if not 0 <= b < count:
            reason = f"band index {b} out of range: the image has {count} band(s) (valid 0..{count - 1})"
            raise ImageReadError(path, reason)
    return array[index]


def _to_float(path: str | Path, array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder not in ("=", "|"):  # e.g. big-endian 16-bit data
        array = array.astype(array.dtype.newbyteorder("="))
    kind, dtype = array.dtype.kind, array.dtype
    if dtype == np.uint8:
        out = array.astype(np.float32) / np.float32(255.0)
    elif dtype == np.uint16:
        out = array.astype(np.float32) / np.float32(65535.0)
    elif kind == "b":
        out = array.astype(np.float32)
    elif kind == "f":
        out = array.astype(np.float32)
    else:
        raise ImageReadError(
            path,
            f"unsupported sample type {dtype}; supported: uint8 (/255), uint16 (/65535), float (as is)",
        )
    return np.ascontiguousarray(out)
