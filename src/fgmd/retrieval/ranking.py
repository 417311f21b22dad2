"""Exact Hamming ranking of candidate sets: order by (distance, database position).

Every search backend produces, per query, a set of candidate items with their exact
Hamming distances, guaranteed to contain every item that can enter the answer. These
helpers turn such a set into the answer; ties are always broken by database position
(insertion order), so all backends return identical results.

Distances are small non-negative integers (at most the code length ``K``), which makes the
k-th smallest distance cheap to find by counting instead of sorting.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# A whole-database ranking (``positions=None``) this long is first cut down to the items
# within a distance guessed from a strided sample of this size.
_SAMPLE_SIZE = 1024


class TopK(NamedTuple):
    """Result of a top-k search: ``distances [Q, k']`` int32 and ``indices [Q, k']`` int64
    (database positions), ``k' = min(k, N)``, each row sorted by (distance, position)."""

    distances: np.ndarray
    indices: np.ndarray


class Hits(NamedTuple):
    """Result of a radius search for one query: ``distances [m]`` int32 and ``indices [m]``
    int64 (database positions), sorted by (distance, position). Same field order as ``TopK``
    (and faiss): distances first."""

    distances: np.ndarray
    indices: np.ndarray


def kth_smallest(distances: np.ndarray, k: int, max_distance: int) -> int:
    """Smallest ``t`` with at least ``k`` entries ``<= t``: the k-th smallest distance.

    ``distances`` is ``[n]`` integers in ``[0, max_distance]`` with ``1 <= k <= n``. Binary
    search on counts: ``O(n log K)`` vectorised work, no sort.
    """
    lo, hi = 0, max_distance
    while lo < hi:
        mid = (lo + hi) // 2
        if np.count_nonzero(distances <= mid) >= k:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _order(distances: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.lexsort((positions, distances))


def select_topk(
    distances: np.ndarray, k: int, max_distance: int, positions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one query's candidates.

    Args:
        distances: ``[n]`` integer Hamming distances of the candidates.
        k: number of results wanted (``>= 1``); ``min(k, n)`` are returned.
        max_distance: upper bound of the distances (the code length ``K``).
        positions: ``[n]`` distinct database positions of the candidates, in any order;
            ``None`` means ``arange(n)`` (the candidates are the whole database, in order).

    Returns:
        ``(distances [k'] int32, positions [k'] int64)`` sorted by (distance, position).
    """
    n = len(distances)
    if positions is None and n >= 8 * _SAMPLE_SIZE:
        # One pass keeps the items within a generous guess of the k-th distance (a sample
        # quantile at 2k / n); if they are at least k, the answer lies among them.
        sample = np.sort(distances[:: n // _SAMPLE_SIZE])
        guess = sample[min(len(sample) - 1, 2 * k * len(sample) // n)]
        within = np.flatnonzero(distances <= guess)
        if len(within) >= k:
            return select_topk(distances[within], k, max_distance, positions=within)
    if n > k:
        threshold = kth_smallest(distances, k, max_distance)
        below = np.flatnonzero(distances < threshold)
        ties = np.flatnonzero(distances == threshold)
        need = k - len(below)
        if positions is None:
            ties = ties[:need]
        elif len(ties) > need:
            ties = ties[np.argpartition(positions[ties], need - 1)[:need]]
        chosen = np.concatenate((below, ties))
        distances = distances[chosen]
        positions = chosen if positions is None else positions[chosen]
    elif positions is None:
        positions = np.arange(n, dtype=np.int64)
    order = _order(distances, positions)
    return distances[order].astype(np.int32), positions[order].astype(np.int64)


def select_radius(distances: np.ndarray, radius: int, positions: np.ndarray | None = None) -> Hits:
    """All candidates within ``radius`` (inclusive), sorted by (distance, position).

    Arguments as in ``select_topk``.
    """
    chosen = np.flatnonzero(distances <= radius)
    chosen_distances = distances[chosen]
    chosen_positions = chosen if positions is None else positions[chosen]
    order = _order(chosen_distances, chosen_positions)
    return Hits(chosen_distances[order].astype(np.int32), chosen_positions[order].astype(np.int64))


def stack_topk(rows: list[tuple[np.ndarray, np.ndarray]], k: int) -> TopK:
    """Stack per-query ``(distances [k'], positions [k'])`` rows into a ``TopK``."""
    distances = np.empty((len(rows), k), dtype=np.int32)
    indices = np.empty((len(rows), k), dtype=np.int64)
    for row, (row_distances, row_positions) in enumerate(rows):
        distances[row] = row_distances
        indices[row] = row_positions
    return TopK(distances, indices)
