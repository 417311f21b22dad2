"""Search an index with query images: encode them with the other branch, rank by Hamming distance.

    import fgmd
    index = fgmd.Index.load("archive.fgidx")                    # pan codes made by `fgmd index`
    results = fgmd.search_images(index, "best.pt", ["scene.png"], "ms", k=10)
    for hit_id, distance in zip(results[0].ids, results[0].distances):
        print(hit_id, distance)

The index must hold codes of the *other* modality made by the same checkpoint:
``check_compatible`` refuses an index whose encoder identity (weights hash of the indexed
branch, code length, model and preprocessing config; see ``fgmd.retrieval.identity``) does
not match the query model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fgmd.config import Config
from fgmd.data.preprocess import build_preprocessor
from fgmd.models import FGMD, load_run

from .encode_archive import ArchiveError, ArchiveSource, encode_source, split_source
from .identity import encoder_identity, identity_mismatches
from .index_file import Index
from .ranking import Hits

__all__ = ["IndexMismatchError", "QueryResult", "check_compatible", "search_images"]


class IndexMismatchError(ValueError):
    """The index was not made by the other branch of the query model."""


@dataclass
class QueryResult:
    """The answer to one query image.

    Attributes:
        query: the query's id (the path as given, or the dataset id for a split).
        ids: ids of the hits, best first.
        distances: ``[n]`` int32 Hamming distances, ascending (ties by index position).
        positions: ``[n]`` int64 positions of the hits in the index.
        labels: ``[n, L]`` uint8 multi-hot labels of the hits when the index has labels.
    """

    query: str
    ids: list[str]
    distances: np.ndarray
    positions: np.ndarray
    labels: np.ndarray | None = None


def check_compatible(index: Index, model: FGMD, config: Config, query_modality: str) -> None:
    """Raise ``IndexMismatchError`` unless ``index`` holds codes of the other modality made
    by ``model``'s other branch (weights hash, bits, model and preprocessing config)."""
    modalities = list(model.modalities)
    if query_modality not in modalities:
        raise IndexMismatchError(f"the model has modalities {modalities}; there is no {query_modality!r} encoder")
    if index.modality == query_modality:
        raise IndexMismatchError(
            f"the index holds {index.modality!r} codes, like the queries: cross-modal search needs an index "
            f"of the other modality ({[m for m in modalities if m != query_modality][0]!r})"
        )
    if index.modality not in modalities:
        raise IndexMismatchError(f"the index holds {index.modality!r} codes but the model has modalities {modalities}")
    expected = encoder_identity(model.encoder(index.modality), config, index.modality)
    problems = identity_mismatches(index.encoder, expected)
    if problems:
        raise IndexMismatchError(
            f"the index was not made by this checkpoint's {index.modality} encoder: " + "; ".join(problems)
        )


def _model_and_config(checkpoint, overrides: Sequence[str]) -> tuple[FGMD, Config]:
    if isinstance(checkpoint, tuple):
        model, config = checkpoint
        return model, config.with_overrides(list(overrides)) if overrides else config
    model, config, _ = load_run(checkpoint, overrides)
    return model, config


def search_images(
    index: Index | str | os.PathLike,
    checkpoint: str | os.PathLike | tuple[FGMD, Config],
    images: Sequence[str | os.PathLike] | None = None,
    modality: str | None = None,
    *,
    split: str | None = None,
    k: int | None = 10,
    radius: int | None = None,
    backend: str = "auto",
    recall_target: float | None = None,
    nprobe: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    overrides: Sequence[str] = (),
) -> list[QueryResult]:
    """Cross-modal search: encode query images of ``modality`` and rank the index by Hamming distance.

    Args:
        index: an ``Index`` or the path of an index file (of the other modality).
        checkpoint: the checkpoint path, or ``(model, config)`` as returned by ``fgmd.load_model``.
        images: query image files (their ids in the result are the paths as given) ...
        modality: ... of this modality; or
        split: the queries are this split of the checkpoint's dataset (ids from the dataset).
        k: neighbours per query (exact top-k, ties by index position); or
        radius: every item within this Hamming distance (inclusive) instead of top-k.
        backend: ``"auto"``, ``"numpy"``, ``"faiss"`` or ``"mih"``: identical results; or the
            approximate ``"ivf"``, which scans ``nprobe`` clusters per query (default: calibrated
            to ``recall_target``).
        overrides: config overrides (e.g. ``data.root=...`` to find a split elsewhere).

    Raises:
        IndexMismatchError: the index was not made by the other branch of this checkpoint.
        ImageReadError: a query image cannot be read.
    """
    if modality is None:
        raise ArchiveError("give the modality of the query images")
    if (images is None) == (split is None):
        raise ArchiveError("give query images or a split, not both")
    if radius is None and k is None:
        raise ArchiveError("give k or a radius")
    if not isinstance(index, Index):
        index = Index.load(index)
    model, config = _model_and_config(checkpoint, overrides)
    check_compatible(index, model, config, modality)
    if split is not None:
        source = split_source(config, split, modality)
    else:
        assert images is not None  # checked above: images or a split
        names = [os.fspath(p) for p in images]
        source = ArchiveSource(names, names, None, ".", "query images")
    if len(source) == 0:
        return []
    encoder = model.encoder(modality).to(device)
    preprocess = build_preprocessor(config.data, modality)
    codes, kept, _ = encode_source(
        encoder,
        preprocess,
        source,
        range(len(source)),
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        offer_skip=False,
    )
    labels = index.labels
    results = []
    if radius is not None:
        answers = index.radius_search(codes, radius, backend, recall_target=recall_target, nprobe=nprobe)
    else:
        assert k is not None  # checked above: k or a radius
        top = index.search(codes, k, backend, recall_target=recall_target, nprobe=nprobe)
        answers = [Hits(d, i) for d, i in zip(top.distances, top.indices)]
    for position, (distances, hits) in zip(kept, answers):
        results.append(
            QueryResult(
                source.ids[position],
                index.ids[hits] if len(hits) else [],
                np.asarray(distances, dtype=np.int32),
                np.asarray(hits, dtype=np.int64),
                None if labels is None else labels[hits],
            )
        )
    return results
