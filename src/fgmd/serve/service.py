"""The search service behind ``fgmd serve``: model and indexes loaded once, queries answered
from uploaded bytes or from the query split, thumbnails, and the per-query AP benchmark.

Everything here is plain Python (no web framework): ``app.py`` maps HTTP requests onto a
:class:`SearchService`, and tests or scripts can call it directly.

Preprocessing is the run's one pipeline, ``fgmd.data.preprocess.Preprocessor``: an upload is
decoded in memory (:func:`fgmd.data.io.decode_image`, the CLI's size limits), then band
selection, radiometry, resize, centre crop and normalisation follow exactly as in ``fgmd
eval`` and ``fgmd index`` for files.

Thread safety: the model runs under one lock (a CPU forward pass already uses every core);
indexes and caches are read-only after start-up or guarded by their own lock.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fgmd.codes import hamming_distances, pack_codes, unpack_codes
from fgmd.config import Config
from fgmd.data.datasets import ModalityImages
from fgmd.data.io import ImageReadError
from fgmd.data.preprocess import build_preprocessor
from fgmd.evaluation.metrics import average_precision_per_query
from fgmd.models import load_run
from fgmd.retrieval import Index
from fgmd.retrieval.image_search import check_compatible

__all__ = ["QueryError", "SearchService", "render_preview", "MAX_PAGE"]

MAX_PAGE = 200  # results per request
THUMBNAIL_SIZE = 128  # longest side of a thumbnail, pixels


class QueryError(ValueError):
    """A request cannot be answered; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def render_preview(image: torch.Tensor, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG for people to look at: ``image [C, H, W]`` (any value range) -> 8-bit grey
    (1-2 bands: the first) or RGB (3+ bands: the first three), each band stretched between
    its 2nd and 98th percentiles, longest side ``size``."""
    bands = image[:3] if image.shape[0] >= 3 else image[:1]
    array = bands.float().numpy()
    low, high = np.nanpercentile(array.reshape(len(array), -1), [2, 98], axis=1)
    scaled = (array - low[:, None, None]) / np.maximum(high - low, 1e-12)[:, None, None]
    pixels = (np.nan_to_num(np.clip(scaled, 0, 1)) * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[0] if len(pixels) == 1 else np.moveaxis(pixels, 0, -1))
    scale = size / max(picture.size)
    picture = picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS,
    )
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


@dataclass
class QuerySplit:
    """The query split of one modality: ids, files, multi-hot labels ``[n, L]`` and the
    dataset view that yields preprocessed images (``images[i]["image"]``)."""

    ids: list[str]
    paths: list[str]
    labels: np.ndarray
    images: ModalityImages
    positions: dict[str, int]


class SearchService:
    """Cross-modal search over the given indexes with one checkpoint.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of the run whose branches made the indexes.
        indexes: index files (``fgmd index``); at most one per modality. A query of modality
            ``m`` searches the index of the other modality.
        run_dir: the run folder; a relative ``data.root`` that does not exist from the
            current directory is looked up from there (the query split and thumbnails of
            indexes written before image paths were stored need the dataset).
        device: where queries are encoded.
        overrides: config overrides (``data.root=...``) applied to the run config.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        indexes: Sequence[str | os.PathLike],
        run_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        overrides: Sequence[str] = (),
    ):
        if not indexes:
            raise QueryError("give at least one index file")
        self.checkpoint = Path(checkpoint)
        self.model, config, _ = load_run(checkpoint, overrides, device)
        self.config = _resolve_root(config, run_dir)
        self.device = torch.device(device)
        self.modalities = tuple(self.model.modalities)
        self.indexes: dict[str, Index] = {}
        self.index_files: dict[str, str] = {}
        for file in indexes:
            index = Index.load(file)
            if index.modality in self.indexes:
                raise QueryError(f"{file} and {self.index_files[index.modality]} both hold {index.modality} codes")
            check_compatible(index, self.model, self.config, self._other(index.modality))
            self.indexes[index.modality] = index
            self.index_files[index.modality] = os.fspath(file)
        self.inputs = {m: build_preprocessor(self.config.data, m) for m in self.config.data.modalities}
        self.class_names = self._class_names()
        self._model_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._thumbnails: OrderedDict[tuple, bytes] = OrderedDict()
        self._splits: dict[str, QuerySplit | str] = {}
        self._benchmarks: dict[str, dict] = {}
        self._dataset_files: dict[str, dict[str, str]] | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """Build the search backends and run each encoder once, so the first query is as
        fast as the others."""
        for modality in self.query_modalities:
            index = self.indexes[self._other(modality)]
            if len(index):
                index.search(index.codes[:1], 1)
            size = self.config.data.image_size
            channels = self.inputs[modality].channels
            self.encode(torch.zeros(1, channels, size, size), modality)

    # ------------------------------------------------------------------ description

    @property
    def query_modalities(self) -> list[str]:
        """Modalities a query can have: those whose other modality has an index."""
        return [m for m in self.modalities if self._other(m) in self.indexes]

    def _other(self, modality: str) -> str:
        if modality not in self.modalities:
            raise QueryError(f"unknown modality {modality!r}; the model has {list(self.modalities)}")
        return next(m for m in self.modalities if m != modality)

    def info(self) -> dict:
        """What the page needs to set itself up."""
        data = self.config.data
        return {
            "checkpoint": str(self.checkpoint),
            "modalities": list(self.modalities),
            "query_modalities": self.query_modalities,
            "bits": self.config.model.bits,
            "class_names": self.class_names,
            "indexes": {
                m: {
                    "file": self.index_files[m],
                    "count": len(index),
                    "labels": index.labels is not None,
                    "root": index.root,
                    "paths": index.paths is not None,
                }
                for m, index in self.indexes.items()
            },
            "query_split": data.query_split,
            "preprocessing": {
                "image_size": data.image_size,
                "resize": data.resize,
                "modality": {m: dataclasses.asdict(data.modality_config(m)) for m in self.modalities},
                "spec": {m: self.inputs[m].spec() for m in self.modalities},
            },
            "max_page": MAX_PAGE,
        }

    def _class_names(self) -> list[str] | None:
        for index in self.indexes.values():
            if index.class_names is not None:
                return index.class_names
        try:
            from fgmd.data.datasets import build_dataset

            return list(build_dataset(self.config.data, self.config.data.query_split).class_names)
        except Exception:  # noqa: BLE001 - without the dataset, labels are shown as numbers
            return None

    def label_names(self, multi_hot: np.ndarray | None) -> list[str] | None:
        if multi_hot is None:
            return None
        columns = np.flatnonzero(multi_hot)
        names = self.class_names
        return [names[c] if names and c < len(names) else f"class {c}" for c in columns]

    # ------------------------------------------------------------------- encoding

    def preprocess_upload(self, data: bytes, name: str, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(decoded image [C, H, W] after band selection and radiometry, model input
        [C, S, S])`` of uploaded bytes; ``ImageReadError`` when they are not a usable image."""
        preprocess = self.inputs[modality]
        image = preprocess.decode(data, name)
        return image, preprocess.transform(image)

    @torch.no_grad()
    def encode(self, batch: torch.Tensor, modality: str) -> np.ndarray:
        """Packed codes ``[B, K/8]`` uint8 of preprocessed images ``[B, C, S, S]``."""
        with self._model_lock:
            codes = self.model.encoder(modality).encode(batch.to(self.device)).float().cpu()
        return pack_codes(codes)

    # --------------------------------------------------------------------- search

    def search(
        self,
        packed: np.ndarray,
        modality: str,
        k: int = 10,
        offset: int = 0,
        radius: int | None = None,
        query_labels: np.ndarray | None = None,
    ) -> dict:
        """One page of results for the query code ``packed [1, K/8]`` of ``modality``.

        Top-k mode: ranks ``offset + 1 .. offset + k`` of the full ranking (``total`` = index
        size). Radius mode: the same page of the items within Hamming distance ``radius``
        (``total`` = how many there are). Ranking: (distance, index position). Each hit has
        ``tie_group``, the number of items in the whole index at its distance.
        """
        if not 1 <= k <= MAX_PAGE:
            raise QueryError(f"k must be between 1 and {MAX_PAGE}, got {k}")
        if offset < 0:
            raise QueryError(f"offset must be >= 0, got {offset}")
        bits = self.config.model.bits
        if radius is not None and not 0 <= radius <= bits:
            raise QueryError(f"radius must be between 0 and {bits}, got {radius}")
        index = self.indexes[self._other(modality)]
        distances = hamming_distances(packed, index.codes)[0]  # [N]
        histogram = np.bincount(distances, minlength=bits + 1)
        if radius is None:
            total = len(index)
            top = index.search(packed, offset + k)  # k' = min(offset + k, N)
            positions, hit_distances = top.indices[0][offset:], top.distances[0][offset:]
        else:
            total = int(histogram[: radius + 1].sum())
            found = index.radius_search(packed, radius)[0]
            positions, hit_distances = found.indices[offset : offset + k], found.distances[offset : offset + k]
        results = []
        for rank, (position, distance) in enumerate(zip(positions, hit_distances), start=offset + 1):
            position = int(position)
            labels = None if index.labels is None else index.labels[position]
            relevant = None
            if labels is not None and query_labels is not None:
                relevant = bool((labels.astype(bool) & query_labels.astype(bool)).any())
            results.append(
                {
                    "rank": rank,
                    "distance": int(distance),
                    "id": index.ids[position],
                    "path": index.paths[position] if index.paths is not None else self._dataset_file(index, position),
                    "label": self.label_names(labels),
                    "relevant": relevant,
                    "tie_group": int(histogram[distance]),
                    "position": position,
                    "thumbnail": f"/api/thumbnail/{index.modality}/{position}",
                }
            )
        return {
            "index_modality": index.modality,
            "mode": "top-k" if radius is None else "radius",
            "k": k,
            "offset": offset,
            "radius": radius,
            "total": total,
            "results": results,
        }

    def search_upload(self, data: bytes, name: str, modality: str, **page) -> dict:
        """Decode, preprocess, encode and search an uploaded image of ``modality``."""
        self._other(modality)
        start = time.perf_counter()
        image, model_input = self.preprocess_upload(data, name, modality)
        decoded = time.perf_counter()
        packed = self.encode(model_input[None], modality)
        encoded = time.perf_counter()
        answer = self.search(packed, modality, **page)
        answer["query"] = {
            "modality": modality,
            "name": name,
            "size": list(image.shape),
            "label": None,
            "preview": "data:image/png;base64," + base64.b64encode(render_preview(image)).decode(),
        }
        answer["timing_ms"] = {
            "decode": round((decoded - start) * 1000, 2),
            "encode": round((encoded - decoded) * 1000, 2),
            "search": round((time.perf_counter() - encoded) * 1000, 2),
        }
        return answer

    def search_split_item(self, query_id: str, modality: str, **page) -> dict:
        """Search with item ``query_id`` of the query split of ``modality``."""
        split = self.query_split(modality)
        if query_id not in split.positions:
            raise QueryError(f"no {modality} item {query_id!r} in split {self.config.data.query_split!r}", 404)
        position = split.positions[query_id]
        start = time.perf_counter()
        model_input = split.images[position]["image"]
        decoded = time.perf_counter()
        packed = self.encode(model_input[None], modality)
        encoded = time.perf_counter()
        labels = split.labels[position]
        answer = self.search(packed, modality, query_labels=labels, **page)
        answer["query"] = {
            "modality": modality,
            "id": query_id,
            "path": split.paths[position],
            "label": self.label_names(labels),
            "preview": f"/api/query-thumbnail/{modality}/{position}",
        }
        answer["timing_ms"] = {
            "decode": round((decoded - start) * 1000, 2),
            "encode": round((encoded - decoded) * 1000, 2),
            "search": round((time.perf_counter() - encoded) * 1000, 2),
        }
        return answer

    # ---------------------------------------------------------------- query split

    def query_split(self, modality: str) -> QuerySplit:
        """The query split's items of ``modality`` (loaded on first use); ``QueryError``
        (404) naming the reason when the dataset cannot be found."""
        self._other(modality)
        with self._cache_lock:
            if modality not in self._splits:
                self._splits[modality] = self._load_split(modality)
            split = self._splits[modality]
        if isinstance(split, str):
            raise QueryError(split, 404)
        return split

    def _load_split(self, modality: str) -> QuerySplit | str:
        from fgmd.data.datasets import build_dataset
        from fgmd.errors import USER_ERRORS

        name = self.config.data.query_split
        try:
            dataset = build_dataset(self.config.data, name)
        except USER_ERRORS as error:
            return f"the query split {name!r} is not available: {error}"
        images = dataset.images(modality, self.inputs[modality])
        ids = [r.id for r in images.records]
        return QuerySplit(
            ids,
            [str(r.paths[modality]) for r in images.records],
            images.labels.numpy().astype(np.uint8),
            images,
            {item_id: i for i, item_id in enumerate(ids)},
        )

    def query_items(self, modality: str) -> list[dict]:
        """``[{"id", "label", "position"}]`` of the query split of ``modality``."""
        split = self.query_split(modality)
        return [
            {"id": item_id, "label": self.label_names(split.labels[i]), "position": i}
            for i, item_id in enumerate(split.ids)
        ]

    def benchmark(self, modality: str) -> dict:
        """Per-query AP of the query split of ``modality`` against the other index (full
        ranking, ties by index position; the ``map`` of ``fgmd eval``), computed once."""
        index = self.indexes[self._other(modality)]
        if index.labels is None:
            raise QueryError(f"the {index.modality} index has no labels: no benchmark", 404)
        split = self.query_split(modality)
        with self._cache_lock:
            cached = self._benchmarks.get(modality)
        if cached is not None:
            return cached
        packed = []
        for start in range(0, len(split.ids), 64):
            batch = torch.stack([split.images[i]["image"] for i in range(start, min(start + 64, len(split.ids)))])
            packed.append(self.encode(batch, modality))
        bits = self.config.model.bits
        query_codes = torch.from_numpy(unpack_codes(np.concatenate(packed), bits)).float()
        db_codes = torch.from_numpy(unpack_codes(index.codes, bits)).float()
        query_labels, db_labels = torch.from_numpy(split.labels), torch.from_numpy(np.array(index.labels))
        ap = average_precision_per_query(query_codes, db_codes, query_labels, db_labels)
        ap_tie = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, tie_aware=True)
        rows = [
            {"id": item_id, "label": self.label_names(split.labels[i]), "ap": float(ap[i]), "ap_tie": float(ap_tie[i])}
            for i, item_id in enumerate(split.ids)
        ]
        result = {
            "query_modality": modality,
            "index_modality": index.modality,
            "map": float(ap.mean()) if len(ap) else None,  # ties by index position
            "map_tie": float(ap_tie.mean()) if len(ap_tie) else None,  # tie-aware
            "queries": rows,
        }
        with self._cache_lock:
            self._benchmarks[modality] = result
        return result

    # ----------------------------------------------------------------- thumbnails

    def thumbnail(self, modality: str, position: int) -> bytes:
        """PNG thumbnail of item ``position`` of the ``modality`` index."""
        if modality not in self.indexes:
            raise QueryError(f"no {modality} index is loaded", 404)
        index = self.indexes[modality]
        if not 0 <= position < len(index):
            raise QueryError(f"the {modality} index has no item {position}", 404)
        file = index.file_of(position) or self._dataset_file(index, position)
        return self._cached_thumbnail(("index", modality, position), modality, file, index.ids[position])

    def query_thumbnail(self, modality: str, position: int) -> bytes:
        """PNG thumbnail of item ``position`` of the query split of ``modality``."""
        split = self.query_split(modality)
        if not 0 <= position < len(split.ids):
            raise QueryError(f"the {modality} query split has no item {position}", 404)
        return self._cached_thumbnail(
            ("query", modality, position), modality, split.paths[position], split.ids[position]
        )

    def _cached_thumbnail(self, key: tuple, modality: str, file: str | None, item_id: str) -> bytes:
        with self._cache_lock:
            if key in self._thumbnails:
                self._thumbnails.move_to_end(key)
                return self._thumbnails[key]
        if file is None:
            raise QueryError(f"the image file of {item_id!r} is unknown (index written without paths)", 404)
        try:
            png = render_preview(self.inputs[modality].read(file))
        except ImageReadError as error:
            raise QueryError(str(error), 404) from None
        with self._cache_lock:
            self._thumbnails[key] = png
            while len(self._thumbnails) > 4096:
                self._thumbnails.popitem(last=False)
        return png

    def _dataset_file(self, index: Index, position: int) -> str | None:
        """The file of an index item found through the run's dataset (indexes written
        before paths were stored), or ``None``."""
        with self._cache_lock:
            if self._dataset_files is None:
                self._dataset_files = _dataset_files(self.config)
            files = self._dataset_files.get(index.modality, {})
        return files.get(index.ids[position])


def _resolve_root(config: Config, run_dir: str | os.PathLike | None) -> Config:
    """``config`` with a relative ``data.root`` that is missing here resolved against ``run_dir``."""
    root = config.data.root
    if run_dir is None or not root or os.path.isabs(root) or os.path.exists(root):
        return config
    candidate = Path(run_dir) / root
    return config.with_values({"data.root": str(candidate.resolve())}) if candidate.exists() else config


def _dataset_files(config: Config) -> dict[str, dict[str, str]]:
    """``{modality: {id: file}}`` over the database and query splits, when the dataset is there."""
    from fgmd.data.datasets import build_dataset
    from fgmd.errors import USER_ERRORS

    files: dict[str, dict[str, str]] = {}
    for split in dict.fromkeys((config.data.database_split, config.data.query_split)):
        try:
            dataset = build_dataset(config.data, split)
        except USER_ERRORS:
            continue
        for record in dataset.records:
            for modality, path in record.paths.items():
                files.setdefault(modality, {}).setdefault(record.id, str(path))
    return files
