"""Exact Hamming search over packed codes: backend choice and the stateless entry points.

``search_topk`` / ``radius_search`` build a backend for one call; ``fgmd.retrieval.Index``
keeps built backends (faiss index, MIH tables) and reuses them across calls.

Backends (all exact, all rank by (distance, database position), so they agree bit for bit):

* ``"numpy"`` — linear scan, always available;
* ``"faiss"`` — faiss ``IndexBinaryFlat`` (``pip install faiss-cpu``), ties re-ranked;
* ``"mih"`` — multi-index hashing, sub-linear on large archives with short codes;
* ``"auto"`` — ``"mih"`` when ``N >= MIH_MIN_ITEMS`` and ``K <= MIH_MAX_SUBSTRINGS * log2 N``
  (substrings of about ``log2 N`` bits, few of them), otherwise ``"faiss"`` when installed,
  otherwise ``"numpy"``.

Approximate (``APPROXIMATE_BACKENDS``, never chosen by ``"auto"``):

* ``"ivf"`` — faiss ``IndexBinaryIVF`` (``backends.faiss_ivf``): scans the ``nprobe`` nearest
  clusters only; ``nprobe`` is given or calibrated to a recall target at build time.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from fgmd.codes import check_packed

from .backends import FaissFlat, FaissIVF, MultiIndexHashing, NumpyBruteForce, faiss_available
from .ranking import Hits, TopK

BACKENDS = ("auto", "numpy", "faiss", "mih")
APPROXIMATE_BACKENDS = ("ivf",)
# "auto" picks MIH from this many items on. Measured with benchmarks/bench_search.py (one
# core each, k = 100, 32/64-bit codes): on clustered, trained-hashing-like codes MIH beats
# faiss IndexBinaryFlat 1.6-6x at 1M items and 4-37x at 10M, and is about even at 500k
# (slower at 200k); on structureless random 64-bit codes it is ~0.6-0.8x at 1M (the
# per-query switch to a linear scan bounds the loss) and ~1.5x at 10M...
MIH_MIN_ITEMS = 1_000_000
# ...when K / log2(N) (the default number of MIH substrings) is at most this.
MIH_MAX_SUBSTRINGS = 4


class Backend(Protocol):
    """What every backend provides (see ``fgmd.retrieval.backends``)."""

    name: str

    def __len__(self) -> int: ...

    def topk(self, queries_packed: np.ndarray, k: int) -> TopK: ...

    def radius(self, queries_packed: np.ndarray, radius: int) -> list[Hits]: ...


def resolve_backend(backend: str, n_items: int, bits: int) -> str:
    """The concrete backend name for ``backend`` on ``n_items`` codes of ``bits`` bits."""
    if backend not in BACKENDS + APPROXIMATE_BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; choose one of {BACKENDS + APPROXIMATE_BACKENDS}")
    if backend in ("faiss", "ivf") and not faiss_available():
        raise ImportError(f"search backend {backend!r} needs faiss: pip install faiss-cpu (or fgmd[search])")
    if backend != "auto":
        return backend
    if n_items >= MIH_MIN_ITEMS and bits <= MIH_MAX_SUBSTRINGS * math.log2(n_items):
        return "mih"
    return "faiss" if faiss_available() else "numpy"


def build_backend(
    backend: str,
    db_packed: np.ndarray,
    bits: int,
    *,
    mih_substrings: int | None = None,
    nprobe: int | None = None,
    recall_target: float | None = None,
) -> Backend:
    """Build the backend named ``backend`` (``"auto"`` resolved) over ``db_packed [N, K/8]``, N >= 1.

    ``nprobe`` / ``recall_target`` configure ``"ivf"`` (``FaissIVF``; default: calibrated to
    ``faiss_ivf.DEFAULT_RECALL_TARGET``) and are ignored by the exact backends.
    """
    name = resolve_backend(backend, len(db_packed), bits)
    if name == "ivf":
        if recall_target is None:
            return FaissIVF(db_packed, bits, nprobe=nprobe)
        return FaissIVF(db_packed, bits, nprobe=nprobe, recall_target=recall_target)
    if name == "mih":
        return MultiIndexHashing(db_packed, bits, mih_substrings)
    if name == "faiss":
        return FaissFlat(db_packed, bits)
    return NumpyBruteForce(db_packed, bits)


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    return int(radius)


def empty_topk(n_queries: int) -> TopK:
    """The answer on an empty database: ``[Q, 0]`` arrays."""
    return TopK(np.empty((n_queries, 0), dtype=np.int32), np.empty((n_queries, 0), dtype=np.int64))


def empty_radius(n_queries: int) -> list[Hits]:
    """The radius answer on an empty database: ``Q`` empty ``Hits``."""
    return [Hits(np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)) for _ in range(n_queries)]


def _check_inputs(query_packed: np.ndarray, db_packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    db_packed = np.asarray(db_packed)
    if db_packed.dtype != np.uint8 or db_packed.ndim != 2 or db_packed.shape[1] == 0:
        raise ValueError(f"database codes must be packed uint8 [N, K/8], got {db_packed.dtype} {db_packed.shape}")
    bits = 8 * db_packed.shape[1]
    return (
        check_packed(query_packed, bits, "query codes"),
        check_packed(db_packed, bits, "database codes"),
        bits,
    )


def search_topk(
    query_packed: np.ndarray,
    db_packed: np.ndarray,
    k: int,
    backend: str = "auto",
    *,
    mih_substrings: int | None = None,
) -> TopK:
    """Exact top-k by Hamming distance, ties broken by database position.

    Args:
        query_packed: ``[Q, K/8]`` uint8 packed query codes.
        db_packed: ``[N, K/8]`` uint8 packed database codes.
        k: neighbours per query (``>= 1``); ``k' = min(k, N)`` are returned.
        backend: ``"auto"``, ``"numpy"``, ``"faiss"`` or ``"mih"`` (module docstring).
        mih_substrings: MIH substring count ``m`` (default ``K / log2 N``).

    Returns:
        ``TopK(distances [Q, k'] int32, indices [Q, k'] int64)``, rows sorted by
        (distance, position). The backend (faiss index, MIH tables) is built for this call
        only; use ``fgmd.retrieval.Index`` to reuse it.
    """
    k = check_k(k)
    query_packed, db_packed, bits = _check_inputs(query_packed, db_packed)
    if len(db_packed) == 0:
        resolve_backend(backend, 0, bits)
        return empty_topk(len(query_packed))
    return build_backend(backend, db_packed, bits, mih_substrings=mih_substrings).topk(query_packed, k)


def radius_search(
    query_packed: np.ndarray,
    db_packed: np.ndarray,
    radius: int,
    backend: str = "auto",
    *,
    mih_substrings: int | None = None,
) -> list[Hits]:
    """Every item within Hamming distance ``radius`` (inclusive) of each query.

    Arguments as in ``search_topk``. Returns one ``Hits(distances [m_q] int32, indices [m_q]
    int64)`` per query, sorted by (distance, position) — the field order of ``TopK``.
    """
    radius = check_radius(radius)
    query_packed, db_packed, bits = _check_inputs(query_packed, db_packed)
    if len(db_packed) == 0:
        resolve_backend(backend, 0, bits)
        return empty_radius(len(query_packed))
    return build_backend(backend, db_packed, bits, mih_substrings=mih_substrings).radius(query_packed, radius)
