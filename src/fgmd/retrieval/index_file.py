"""``Index``: an archive of packed hash codes with ids, labels and encoder identity, its
file format, and search over it.

File format, version 2 (little-endian; sizes in bytes)::

    offset  size  field
    0       8     magic b"FGMDIDX1"
    8       4     uint32 format version (2; version 1 files, without paths, still load)
    12      4     uint32 reserved (0)
    16      8     uint64 metadata length M
    24      32    sha256 of the metadata bytes
    56      8     zero
    64      M     metadata: UTF-8 JSON object (below)
    P             payload, P = 64 + M rounded up to a multiple of 64

The payload holds the sections, each at a 64-byte aligned offset (relative to ``P``),
zero padding in between::

    codes   [N, K/8] uint8 packed codes, row-major (see ``fgmd.codes``)
    ids     UTF-8, every id followed by b"\\n" (see ``fgmd.retrieval.ids``)
    labels  [N, ceil(L/8)] uint8, multi-hot labels packed with np.packbits(axis=1)
            (big-endian bit order); present only when the index has labels
    paths   UTF-8, the image file of every item, relative to ``root`` (``/``-separated),
            each followed by b"\n"; present only when the index knows its files

Metadata: ``format`` ("fgmd-index"), ``format_version``, ``bits`` (K), ``modality``,
``encoder`` (the encoder identity: a JSON object, e.g. config, weights sha256, modality,
bits), ``count`` (N), ``num_labels`` (L or null), ``sections`` (``{name: {"offset",
"length"}}``), ``payload_size`` and ``payload_sha256`` (hex sha256 of the whole payload);
from version 2 also ``root`` (absolute folder the paths are relative to, or null) and
``class_names`` (the names of the L label columns, or null).

Loading reads the payload with one ``readinto`` and wraps the sections as numpy arrays (no
per-item Python work), after checking the magic, the version, the metadata checksum, the
file size (truncation) and the payload checksum; every failure raises ``IndexFileError``
naming the file and the problem. Saving writes a temporary file in the target directory,
fsyncs it and ``os.replace``-s it over the target, so readers never see a partial file.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgmd.codes import as_packed
from fgmd.runtime.files import write_atomic

from .ids import IdList
from .ranking import Hits, TopK
from .search import Backend, build_backend, check_k, check_radius, empty_radius, empty_topk, resolve_backend

MAGIC = b"FGMDIDX1"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMAT_NAME = "fgmd-index"
_PREFIX = struct.Struct("<8sIIQ32s8x")  # magic, version, reserved, metadata length, sha256
_ALIGN = 64
_SECTIONS = ("codes", "ids", "labels", "paths")


class IndexFileError(ValueError):
    """An index file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _plain_json(value: Any, what: str) -> Any:
    """``value`` round-tripped through JSON (tuples become lists), or a ValueError."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be plain JSON-serialisable data: {error}") from None


def _as_labels(labels: np.ndarray | torch.Tensor, count: int) -> np.ndarray:
    """Multi-hot labels ``[count, L]`` with values 0/1 (any numeric dtype) -> uint8."""
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 2 or len(array) != count:
        raise ValueError(f"labels must be a [{count}, L] multi-hot array, got shape {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError("labels must be multi-hot: every value 0 or 1")
    return array.astype(np.uint8)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class Index:
    """Packed ``K``-bit codes of one modality with ids, optional labels and the identity of
    the encoder that produced them.

    Args:
        bits: code length ``K`` (a multiple of 8).
        modality: modality of the indexed images (e.g. ``"pan"``).
        encoder: identity of the encoder, plain JSON data (e.g. ``{"config": {...},
            "weights_sha256": "...", "modality": "pan", "bits": 64}``); its ``bits`` and
            ``modality`` entries, when present, must match.
        codes, ids, labels, paths: optional first items, as for ``add``.
        root: the folder the items' ``paths`` are relative to (stored absolute), or ``None``.
        class_names: names of the label columns, or ``None``.
    """

    def __init__(
        self,
        bits: int,
        modality: str,
        encoder: Mapping[str, Any],
        codes: np.ndarray | torch.Tensor | None = None,
        ids: Iterable[str] | None = None,
        labels: np.ndarray | torch.Tensor | None = None,
        paths: Iterable[str] | None = None,
        *,
        root: str | os.PathLike | None = None,
        class_names: Iterable[str] | None = None,
    ) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8, got {bits!r}")
        if not isinstance(modality, str) or not modality:
            raise ValueError(f"modality must be a non-empty string, got {modality!r}")
        if not isinstance(encoder, Mapping):
            raise ValueError(f"encoder identity must be a mapping, got {type(encoder).__name__}")
        encoder = _plain_json(dict(encoder), "encoder identity")
        for key, value in (("bits", bits), ("modality", modality)):
            if key in encoder and encoder[key] != value:
                raise ValueError(f"encoder identity has {key}={encoder[key]!r} but the index has {key}={value!r}")
        self._bits = bits
        self._modality = modality
        self._encoder = encoder
        self._codes = np.empty((0, bits // 8), dtype=np.uint8)
        self._ids = IdList.from_strings([])
        self._labels: np.ndarray | None = None
        self._paths: IdList | None = None
        self._root = None if root is None else os.path.abspath(os.fspath(root))
        self._class_names = None if class_names is None else [str(name) for name in class_names]
        self._backends: dict[tuple[str, object], Backend] = {}  # (backend, its options) -> built backend
        if codes is not None or ids is not None:
            if codes is None or ids is None:
                raise ValueError("codes and ids must be given together")
            self.add(codes, ids, labels, paths)
        elif labels is not None or paths is not None:
            raise ValueError("labels and paths need codes and ids")

    # ----------------------------------------------------------------- contents

    def __len__(self) -> int:
        return len(self._codes)

    def __repr__(self) -> str:
        return f"Index({len(self)} items, {self._bits} bits, modality={self._modality!r})"

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def modality(self) -> str:
        return self._modality

    @property
    def encoder(self) -> dict[str, Any]:
        """A copy of the encoder identity."""
        return copy.deepcopy(dict(self._encoder))

    @property
    def codes(self) -> np.ndarray:
        """Packed codes ``[N, K/8]`` uint8 (read-only view)."""
        return _readonly(self._codes)

    @property
    def ids(self) -> IdList:
        """Item ids in database order (a read-only sequence of ``str``)."""
        return self._ids

    @property
    def labels(self) -> np.ndarray | None:
        """Multi-hot labels ``[N, L]`` uint8 0/1 (read-only view), or ``None``."""
        return None if self._labels is None else _readonly(self._labels)

    @property
    def num_labels(self) -> int | None:
        return None if self._labels is None else self._labels.shape[1]

    @property
    def paths(self) -> IdList | None:
        """Image file of every item, relative to ``root`` (read-only sequence), or ``None``."""
        return self._paths

    @property
    def root(self) -> str | None:
        """Absolute folder the ``paths`` are relative to, or ``None``."""
        return self._root

    @property
    def class_names(self) -> list[str] | None:
        """Names of the label columns, or ``None``."""
        return None if self._class_names is None else list(self._class_names)

    def file_of(self, position: int) -> str | None:
        """The image file of item ``position`` (``root`` joined with its path), or ``None``."""
        if self._paths is None:
            return None
        return os.path.join(self._root or "", *self._paths[position].split("/"))

    def add(
        self,
        codes: np.ndarray | torch.Tensor,
        ids: Iterable[str],
        labels: np.ndarray | torch.Tensor | None = None,
        paths: Iterable[str] | None = None,
    ) -> Index:
        """Append items; returns ``self`` (``Index.load(p).add(...).save(p)`` appends).

        Args:
            codes: ``[n, K]`` real / ±1 codes (sign rule, 0 -> +1) or ``[n, K/8]`` packed uint8.
            ids: ``n`` non-empty strings without newlines, unique across the index.
            labels: ``[n, L]`` multi-hot 0/1, required iff the index already has labels
                (the first non-empty ``add`` decides).
            paths: ``n`` image files relative to ``root`` (``/``-separated), required iff
                the index already has paths (the first non-empty ``add`` decides).
        """
        packed = as_packed(codes, self._bits, "codes")
        new_ids = IdList.from_strings(ids)
        if len(new_ids) != len(packed):
            raise ValueError(f"got {len(packed)} codes but {len(new_ids)} ids")
        has_labels = self._labels is not None or (len(self) == 0 and labels is not None)
        if (labels is not None) != has_labels:
            raise ValueError(
                "this index stores labels: pass labels for the new items"
                if has_labels
                else "this index has no labels: items cannot be added with labels"
            )
        has_paths = self._paths is not None or (len(self) == 0 and paths is not None)
        if (paths is not None) != has_paths:
            raise ValueError(
                "this index stores image paths: pass paths for the new items"
                if has_paths
                else "this index has no image paths: items cannot be added with paths"
            )
        new_paths = None if paths is None else IdList.from_strings(paths)
        if new_paths is not None and len(new_paths) != len(packed):
            raise ValueError(f"got {len(packed)} codes but {len(new_paths)} paths")
        new_labels = None if labels is None else _as_labels(labels, len(packed))
        if new_labels is not None and self._labels is not None and new_labels.shape[1] != self._labels.shape[1]:
            raise ValueError(f"labels have {new_labels.shape[1]} classes, the index has {self._labels.shape[1]}")
        if new_labels is not None and self._class_names is not None and new_labels.shape[1] != len(self._class_names):
            raise ValueError(f"labels have {new_labels.shape[1]} classes but the index names {len(self._class_names)}")
        names = new_ids.tolist()
        unique = set(names)
        if len(unique) != len(names):
            repeated = sorted(name for name, count in collections.Counter(names).items() if count > 1)
            raise ValueError(f"duplicate ids among the new items: {repeated[:5]}")
        clash = unique.intersection(self._ids.tolist())
        if clash:
            raise ValueError(f"ids already in the index: {sorted(clash)[:5]}")
        self._codes = np.concatenate((self._codes, packed))
        self._ids = self._ids.concat(new_ids)
        if new_labels is not None:
            self._labels = new_labels if self._labels is None else np.concatenate((self._labels, new_labels))
        if new_paths is not None:
            self._paths = new_paths if self._paths is None else self._paths.concat(new_paths)
        self._backends.clear()
        return self

    # ------------------------------------------------------------------- search

    def backend(
        self,
        name: str = "auto",
        *,
        mih_substrings: int | None = None,
        nprobe: int | None = None,
        recall_target: float | None = None,
    ) -> Backend:
        """The search backend ``name`` over this index, built on first use and cached until
        the next ``add`` (``"auto"``: see ``fgmd.retrieval.search``). Needs ``len >= 1``.
        ``nprobe`` / ``recall_target`` configure the approximate ``"ivf"`` backend."""
        if len(self) == 0:
            raise ValueError("the index is empty")
        resolved = resolve_backend(name, len(self), self._bits)
        options = {"mih": mih_substrings, "ivf": (nprobe, recall_target)}.get(resolved)
        key = (resolved, options)
        if key not in self._backends:
            self._backends[key] = build_backend(
                resolved,
                self._codes,
                self._bits,
                mih_substrings=mih_substrings,
                nprobe=nprobe,
                recall_target=recall_target,
            )
        return self._backends[key]

    def search(
        self,
        queries: np.ndarray | torch.Tensor,
        k: int,
        backend: str = "auto",
        *,
        mih_substrings: int | None = None,
        nprobe: int | None = None,
        recall_target: float | None = None,
    ) -> TopK:
        """Exact top-k by Hamming distance, ties broken by database position.

        Args:
            queries: ``[Q, K]`` real / ±1 codes or ``[Q, K/8]`` packed uint8.
            k: neighbours per query; ``k' = min(k, N)`` are returned.
            backend: ``"auto"``, ``"numpy"``, ``"faiss"`` or ``"mih"``, which all give identical
                results, or the approximate ``"ivf"`` (not exact: its recall is measured).
            mih_substrings: MIH substring count (default ``K / log2 N``).
            nprobe, recall_target: ``"ivf"`` clusters per query, or the recall it is calibrated to.

        Returns:
            ``TopK(distances [Q, k'] int32, indices [Q, k'] int64)``; ``self.ids[indices[q]]``
            are the ids.
        """
        k = check_k(k)
        queries = as_packed(queries, self._bits, "query codes")
        if len(self) == 0:
            resolve_backend(backend, 0, self._bits)  # still reject unknown names
            return empty_topk(len(queries))
        return self.backend(backend, mih_substrings=mih_substrings, nprobe=nprobe, recall_target=recall_target).topk(
            queries, k
        )

    def radius_search(
        self,
        queries: np.ndarray | torch.Tensor,
        radius: int,
        backend: str = "auto",
        *,
        mih_substrings: int | None = None,
        nprobe: int | None = None,
        recall_target: float | None = None,
    ) -> list[Hits]:
        """Every item within Hamming distance ``radius`` (inclusive) of each query: one
        ``Hits(distances int32, indices int64)`` per query, sorted by (distance, position)."""
        radius = check_radius(radius)
        queries = as_packed(queries, self._bits, "query codes")
        if len(self) == 0:
            resolve_backend(backend, 0, self._bits)  # still reject unknown names
            return empty_radius(len(queries))
        backend_ = self.backend(backend, mih_substrings=mih_substrings, nprobe=nprobe, recall_target=recall_target)
        return backend_.radius(queries, radius)

    # -------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to ``path`` atomically (temp file, fsync, ``os.replace``)."""
        path = Path(path)
        sections = {"codes": self._codes.reshape(-1), "ids": self._ids.blob}
        if self._labels is not None:
            sections["labels"] = np.packbits(self._labels, axis=1, bitorder="big").reshape(-1)
        if self._paths is not None:
            sections["paths"] = self._paths.blob
        payload: list[memoryview | bytes] = []
        layout, offset = {}, 0
        for name, data in sections.items():
            padding = _aligned(offset) - offset
            payload.append(bytes(padding))
            offset += padding
            layout[name] = {"offset": offset, "length": int(data.nbytes)}
            payload.append(memoryview(np.ascontiguousarray(data).data).cast("B"))
            offset += data.nbytes
        digest = hashlib.sha256()
        for piece in payload:
            digest.update(piece)
        metadata = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "bits": self._bits,
            "modality": self._modality,
            "encoder": self._encoder,
            "count": len(self),
            "num_labels": self.num_labels,
            "root": self._root,
            "class_names": self._class_names,
            "sections": layout,
            "payload_size": offset,
            "payload_sha256": digest.hexdigest(),
        }
        meta_bytes = json.dumps(metadata, sort_keys=True, allow_nan=False).encode("utf-8")
        header = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(meta_bytes), hashlib.sha256(meta_bytes).digest())
        head_padding = bytes(_aligned(_PREFIX.size + len(meta_bytes)) - _PREFIX.size - len(meta_bytes))
        pieces = [header, meta_bytes, head_padding, *payload]

        def write(file) -> None:
            for piece in pieces:
                file.write(piece)

        write_atomic(path, write)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        expect_bits: int | None = None,
        expect_modality: str | None = None,
        expect_encoder: Mapping[str, Any] | None = None,
        verify: bool = True,
    ) -> Index:
        """Read an index file, checking its integrity and what the caller expects.

        Args:
            path: the file.
            expect_bits: fail unless the index holds codes of this length.
            expect_modality: fail unless the index holds this modality.
            expect_encoder: fail unless each given key equals the stored encoder identity's
                (e.g. ``{"weights_sha256": ...}`` of the query encoder's checkpoint).
            verify: check the payload sha256 (about 1 s per GB); ``False`` skips it.

        Raises:
            IndexFileError: the file is not an index, has an unsupported version, is
                truncated or corrupted, or does not match the expectations.
        """
        path = Path(path)
        try:
            file = open(path, "rb")
        except OSError as error:
            cause = "no such file" if isinstance(error, FileNotFoundError) else error.strerror or str(error)
            raise IndexFileError(path, f"cannot open the index: {cause}") from None
        with file:
            size = os.fstat(file.fileno()).st_size
            prefix = file.read(_PREFIX.size)
            if not prefix:
                raise IndexFileError(path, "empty file, not an fgmd index")
            if prefix[: len(MAGIC)] != MAGIC[: len(prefix)]:
                raise IndexFileError(
                    path, f"not an fgmd index file (magic {prefix[: len(MAGIC)]!r}, expected {MAGIC!r})"
                )
            if len(prefix) < _PREFIX.size:
                raise IndexFileError(path, f"truncated: {size} bytes, shorter than the {_PREFIX.size}-byte header")
            _, version, _, meta_length, meta_sha256 = _PREFIX.unpack(prefix)
            if version not in READABLE_VERSIONS:
                raise IndexFileError(
                    path,
                    f"unsupported index format version {version} (this fgmd reads versions "
                    f"{', '.join(map(str, READABLE_VERSIONS))})",
                )
            if _PREFIX.size + meta_length > size:
                raise IndexFileError(
                    path, f"truncated: {size} bytes, the metadata alone needs {_PREFIX.size + meta_length}"
                )
            meta_bytes = file.read(meta_length)
            if hashlib.sha256(meta_bytes).digest() != meta_sha256:
                raise IndexFileError(path, "metadata checksum mismatch: the file is corrupted")
            metadata = _parse_metadata(path, meta_bytes)
            _check_expectations(path, metadata, expect_bits, expect_modality, expect_encoder)
            payload_start = _aligned(_PREFIX.size + meta_length)
            expected_size = payload_start + metadata["payload_size"]
            if size != expected_size:
                problem = "truncated" if size < expected_size else "unexpected trailing data"
                raise IndexFileError(path, f"{problem}: {size} bytes, expected {expected_size}")
            file.seek(payload_start)
            payload = bytearray(metadata["payload_size"])
            if file.readinto(payload) != len(payload):
                raise IndexFileError(path, "truncated while reading (the file changed during the read?)")
        if verify and hashlib.sha256(payload).hexdigest() != metadata["payload_sha256"]:
            raise IndexFileError(path, "payload checksum mismatch: the file is corrupted")
        return cls._from_payload(path, metadata, payload)

    @classmethod
    def _from_payload(cls, path: Path, metadata: dict[str, Any], payload: bytearray) -> Index:
        bits, count, num_labels = metadata["bits"], metadata["count"], metadata["num_labels"]
        sections = metadata["sections"]
        expected = {"codes": count * (bits // 8)}
        if num_labels is not None:
            expected["labels"] = count * -(-num_labels // 8)
        arrays = {}
        for name, spec in sections.items():
            if spec["offset"] + spec["length"] > len(payload) or spec["length"] != expected.get(name, spec["length"]):
                raise IndexFileError(path, f"section {name!r} has an inconsistent size or offset")
            arrays[name] = np.frombuffer(payload, dtype=np.uint8, count=spec["length"], offset=spec["offset"])
        try:
            index = cls(
                bits,
                metadata["modality"],
                metadata["encoder"],
                root=metadata.get("root"),
                class_names=metadata.get("class_names"),
            )
        except ValueError as error:
            raise IndexFileError(path, f"inconsistent metadata: {error}") from None
        index._codes = arrays["codes"].reshape(count, bits // 8)
        try:
            index._ids = IdList(arrays["ids"])
        except ValueError as error:
            raise IndexFileError(path, f"malformed ids section: {error}") from None
        if len(index._ids) != count:
            raise IndexFileError(path, f"the ids section holds {len(index._ids)} ids, expected {count}")
        if num_labels is not None:
            packed_labels = arrays["labels"].reshape(count, -(-num_labels // 8))
            index._labels = np.unpackbits(packed_labels, axis=1, count=num_labels, bitorder="big")
        if "paths" in arrays:
            try:
                index._paths = IdList(arrays["paths"])
            except ValueError as error:
                raise IndexFileError(path, f"malformed paths section: {error}") from None
            if len(index._paths) != count:
                raise IndexFileError(path, f"the paths section holds {len(index._paths)} paths, expected {count}")
        return index


def _parse_metadata(path: Path, meta_bytes: bytes) -> dict[str, Any]:
    """Decode and type-check the metadata JSON."""
    try:
        metadata = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexFileError(path, f"malformed metadata: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise IndexFileError(path, "malformed metadata: not an fgmd index description")

    def is_count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    checks = {
        "bits": lambda v: is_count(v) and v > 0 and v % 8 == 0,
        "modality": lambda v: isinstance(v, str) and bool(v),
        "encoder": lambda v: isinstance(v, dict),
        "count": is_count,
        "num_labels": lambda v: v is None or (is_count(v) and v > 0),
        "payload_size": is_count,
        "payload_sha256": lambda v: isinstance(v, str) and len(v) == 64,
        "sections": lambda v: (
            isinstance(v, dict)
            and {"codes", "ids"} <= set(v) <= set(_SECTIONS)
            and all(isinstance(s, dict) and is_count(s.get("offset")) and is_count(s.get("length")) for s in v.values())
        ),
    }
    for key, check in checks.items():
        if key not in metadata or not check(metadata[key]):
            raise IndexFileError(path, f"malformed metadata: bad or missing {key!r}")
    if ("labels" in metadata["sections"]) != (metadata["num_labels"] is not None):
        raise IndexFileError(path, "malformed metadata: labels section and num_labels disagree")
    optional = {
        "root": lambda v: v is None or isinstance(v, str),
        "class_names": lambda v: (
            v is None
            or (isinstance(v, list) and all(isinstance(n, str) for n in v) and len(v) == metadata["num_labels"])
        ),
    }
    for key, check in optional.items():
        if not check(metadata.get(key)):
            raise IndexFileError(path, f"malformed metadata: bad {key!r}")
    return metadata


def _check_expectations(
    path: Path,
    metadata: dict[str, Any],
    expect_bits: int | None,
    expect_modality: str | None,
    expect_encoder: Mapping[str, Any] | None,
) -> None:
    if expect_bits is not None and metadata["bits"] != expect_bits:
        raise IndexFileError(
            path, f"the index holds {metadata['bits']}-bit codes but {expect_bits}-bit codes were expected"
        )
    if expect_modality is not None and metadata["modality"] != expect_modality:
        raise IndexFileError(
            path, f"the index holds modality {metadata['modality']!r} but {expect_modality!r} was expected"
        )
    for key, value in _plain_json(dict(expect_encoder or {}), "expect_encoder").items():
        stored = metadata["encoder"].get(key)
        if stored != value:
            raise IndexFileError(path, f"encoder {key!r} is {stored!r} in the index but {value!r} was expected")
