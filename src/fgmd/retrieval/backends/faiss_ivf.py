"""Approximate search with faiss ``IndexBinaryIVF``, for archives where exact search is too slow.

The database is partitioned into ``nlist`` clusters by binary k-means (faiss trains it on up
to ``TRAIN_PER_LIST * nlist`` codes sampled from the database); a query scans only the items
of the ``nprobe`` clusters whose centroids are nearest to it. The distances returned are the
true Hamming distances, but items of the clusters not probed are missed, so the result is
approximate: its quality is the recall@k against the exact answer (the fraction of the exact
top-k, ties counted by distance, that is returned).

``nprobe`` is either given or **calibrated** at construction to reach ``recall_target`` on
sample queries: ``CALIBRATION_QUERIES`` database codes chosen at random, each with a few bits
flipped at random (about as far from their source as a near neighbour), answered exactly by
the linear scan and by the index with ``nprobe = 1, 2, 4, ...`` until the mean recall@k
reaches the target. The calibrated recall is an estimate for in-distribution queries;
``benchmarks/bench_search.py`` measures the recall of real queries.

Order: within the returned items, ties follow database position (as in the exact backends).
A query whose probed clusters hold fewer than ``k`` items is answered by the exact scan.
"""

from __future__ import annotations

import math

import numpy as np

from ..ranking import Hits, TopK, select_radius
from .numpy_brute import NumpyBruteForce

TRAIN_PER_LIST = 64
CALIBRATION_QUERIES = 64
DEFAULT_RECALL_TARGET = 0.95


def default_nlist(n_items: int) -> int:
    """Clusters: ``sqrt(N)`` rounded up to a power of two, within [1, 4096] and at most ``N / 39``
    (faiss wants at least 39 training codes per cluster)."""
    nlist = 1 << max(0, math.ceil(math.log2(max(1.0, math.sqrt(n_items)))))
    return max(1, min(nlist, 4096, n_items // 39))


def recall_at_k(found_distances: np.ndarray, exact_distances: np.ndarray) -> np.ndarray:
    """Per query, the fraction of the exact top-k returned, counting ties by distance.

    Args:
        found_distances: ``[Q, k]`` true distances of the returned items.
        exact_distances: ``[Q, k]`` distances of the exact top-k (sorted ascending).

    With ``t`` the exact k-th distance, the exact answer holds every item closer than ``t``
    and some of those at ``t``; a returned item closer than ``t`` counts, and returned items at
    ``t`` count up to the number the exact answer has there. Returns ``[Q]`` float64.
    """
    found = np.asarray(found_distances, dtype=np.int64)
    exact = np.asarray(exact_distances, dtype=np.int64)
    kth = exact[:, -1:]
    closer = (found < kth).sum(axis=1)
    at_kth = np.minimum((found == kth).sum(axis=1), (exact == kth).sum(axis=1))
    return (closer + at_kth) / exact.shape[1]


class FaissIVF:
    """Approximate faiss ``IndexBinaryIVF`` backend over ``db_packed [N, K/8]`` uint8 codes (N >= 1).

    Args:
        db_packed: the database codes.
        bits: code length ``K``.
        nlist: clusters (default ``default_nlist(N)``).
        nprobe: clusters scanned per query; ``None`` calibrates it to ``recall_target``.
        recall_target: mean recall@``calibration_k`` the calibrated ``nprobe`` must reach.
        calibration_k: ``k`` of that recall (default 100).
        seed: of the training sample and the calibration queries.

    Attributes:
        nprobe: the clusters scanned per query (given or calibrated).
        calibrated_recall: mean recall@k on the calibration queries at ``nprobe`` (``None`` when
            ``nprobe`` was given).
    """

    name = "ivf"
    exact = False

    def __init__(
        self,
        db_packed: np.ndarray,
        bits: int,
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        recall_target: float = DEFAULT_RECALL_TARGET,
        calibration_k: int = 100,
        seed: int = 0,
    ) -> None:
        import faiss

        if not 0 < recall_target <= 1:
            raise ValueError(f"the recall target must be in (0, 1], got {recall_target}")
        db_packed = np.ascontiguousarray(db_packed)
        n_items = len(db_packed)
        self.bits = bits
        self.nlist = nlist or default_nlist(n_items)
        rng = np.random.default_rng(seed)
        quantizer = faiss.IndexBinaryFlat(bits)
        self.index = faiss.IndexBinaryIVF(quantizer, bits, self.nlist)
        self._quantizer = quantizer  # keep the Python object alive with the index
        train = db_packed
        if n_items > TRAIN_PER_LIST * self.nlist:
            train = db_packed[np.sort(rng.choice(n_items, TRAIN_PER_LIST * self.nlist, replace=False))]
        self.index.train(train)
        self.index.add(db_packed)
        self.brute = NumpyBruteForce(db_packed, bits)
        self.calibrated_recall: float | None = None
        if nprobe is None:
            nprobe, self.calibrated_recall = self._calibrate(db_packed, rng, recall_target, calibration_k)
        self.nprobe = int(min(max(1, nprobe), self.nlist))

    def __len__(self) -> int:
        return self.index.ntotal

    def _calibrate(self, db_packed: np.ndarray, rng: np.random.Generator, target: float, k: int) -> tuple[int, float]:
        """Smallest power-of-two ``nprobe`` whose recall@k on perturbed database codes reaches ``target``."""
        n_items = len(db_packed)
        sources = rng.choice(n_items, min(CALIBRATION_QUERIES, n_items), replace=False)
        queries = np.unpackbits(db_packed[sources], axis=1).astype(bool)
        flips = max(1, self.bits // 16)
        for row in queries:
            row[rng.choice(self.bits, flips, replace=False)] ^= True
        queries = np.packbits(queries, axis=1)
        exact = self.brute.topk(queries, k).distances
        nprobe = 1
        while True:
            self.nprobe = nprobe
            recall = float(recall_at_k(self.topk(queries, k).distances, exact).mean())
            if recall >= target or nprobe >= self.nlist:
                return nprobe, recall
            nprobe *= 2

    def topk(self, queries_packed: np.ndarray, k: int) -> TopK:
        """Approximate top-``min(k, N)`` per query (``[Q, K/8]`` packed queries), true distances."""
        k_eff = min(k, len(self))
        self.index.nprobe = self.nprobe
        distances, labels = self.index.search(np.ascontiguousarray(queries_packed), k_eff)
        distances = distances.astype(np.int32)
        order = np.lexsort((labels, distances), axis=-1)  # ties by database position
        distances = np.take_along_axis(distances, order, axis=-1)
        labels = np.take_along_axis(labels, order, axis=-1).astype(np.int64)
        short = np.flatnonzero((labels < 0).any(axis=1))  # the probed clusters held fewer than k items
        if len(short):
            exact = self.brute.topk(queries_packed[short], k_eff)
            distances[short], labels[short] = exact.distances, exact.indices
        return TopK(distances, labels)

    def radius(self, queries_packed: np.ndarray, radius: int) -> list[Hits]:
        """Items within ``radius`` found in the probed clusters: one ``Hits(distances, indices)`` per query."""
        self.index.nprobe = self.nprobe
        lims, distances, labels = self.index.range_search(np.ascontiguousarray(queries_packed), radius + 1)
        return [
            select_radius(
                distances[lims[i] : lims[i + 1]].astype(np.int32), radius, positions=labels[lims[i] : lims[i + 1]]
            )
            for i in range(len(queries_packed))
        ]
