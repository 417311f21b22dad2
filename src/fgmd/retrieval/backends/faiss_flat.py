"""Exact search with faiss ``IndexBinaryFlat``, re-ranked so ties follow database position.

faiss returns the right *distances* but its order among equal distances (and which of the
items at the k-th distance make the cut) is unspecified. So, per query:

1. search ``k1 = min(N, 4k + 64)`` neighbours (a longer heap costs little next to the
   scan, and makes step 3 rare); ``t`` = the k-th distance;
2. if the ``k1``-th distance exceeds ``t``, every item at distance ``<= t`` is among the
   ``k1`` returned (top-k1 holds every item strictly closer than its last distance);
3. otherwise (a tie run reaches past ``k1``) a range search fetches every item at distance
   ``<= t`` (faiss's binary range search is strict: radius ``t + 1``);
4. the complete candidate set is ranked by (distance, position) with ``select_topk``.

Step 3 costs one more scan for the affected queries only. faiss is imported lazily.
"""

from __future__ import annotations

import functools

import numpy as np

from ..ranking import Hits, TopK, select_radius, select_topk, stack_topk


@functools.lru_cache(maxsize=1)
def faiss_available() -> bool:
    """Whether the optional ``faiss`` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _range_candidates(index, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query ``(distances, positions)`` of all items at distance ``< radius`` (faiss)."""
    lims, distances, labels = index.range_search(queries, radius)
    distances = distances.astype(np.int32)
    return [(distances[lims[i] : lims[i + 1]], labels[lims[i] : lims[i + 1]]) for i in range(len(queries))]


class FaissFlat:
    """Exact faiss ``IndexBinaryFlat`` backend over ``db_packed [N, K/8]`` uint8 codes (N >= 1)."""

    name = "faiss"

    def __init__(self, db_packed: np.ndarray, bits: int) -> None:
        import faiss

        self.bits = bits
        self.index = faiss.IndexBinaryFlat(bits)
        self.index.add(np.ascontiguousarray(db_packed))

    def __len__(self) -> int:
        return self.index.ntotal

    def topk(self, queries_packed: np.ndarray, k: int) -> TopK:
        """Exact top-``min(k, N)`` per query (``[Q, K/8]`` packed queries)."""
        n_items = len(self)
        k_eff = min(k, n_items)
        k1 = min(n_items, 4 * k_eff + 64)
        distances, labels = self.index.search(queries_packed, k1)
        kth = distances[:, k_eff - 1]
        candidates = list(zip(distances, labels))
        truncated = (k1 < n_items) & (distances[:, k1 - 1] == kth)
        for threshold in np.unique(kth[truncated]):
            rows = np.flatnonzero(truncated & (kth == threshold))
            for row, found in zip(rows, _range_candidates(self.index, queries_packed[rows], int(threshold) + 1)):
                candidates[row] = found
        return stack_topk([select_topk(d, k_eff, self.bits, positions=p) for d, p in candidates], k_eff)

    def radius(self, queries_packed: np.ndarray, radius: int) -> list[Hits]:
        """All items within ``radius`` per query: one ``Hits(distances, indices)`` each."""
        return [
            select_radius(d, radius, positions=p) for d, p in _range_candidates(self.index, queries_packed, radius + 1)
        ]
