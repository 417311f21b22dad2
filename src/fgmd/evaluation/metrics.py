"""Hamming-ranking retrieval metrics for hash codes (DESIGN.md §4).

Shapes: ``Q`` queries, ``N`` database items, ``K`` bits, ``L`` classes.

Conventions, shared by every function here:

- Codes are ``[*, K]`` real-valued (e.g. tanh outputs) or ±1, read with the sign rule of
  ``fgmd.codes`` (``0`` maps to ``+1``).
- Relevance: a query and a database item are relevant when they share at least one label.
  Labels are multi-hot ``[*, L]`` (single-label data is one-hot); any entry ``> 0`` counts
  as a label.
- Ranking: ascending Hamming distance, ties broken by database index (a stable sort). Tie
  order is the main cause of mAP disagreements between toolkits (numpy's default
  ``argsort`` is not stable), so it is fixed here.
- Cut-offs ``k`` larger than ``N`` are clamped to ``N``.

All metrics are computed from one ranked-relevance matrix, built a block of queries at a
time (``chunk_size`` queries per block, by default about 16M query-item entries per block),
so memory stays bounded for large databases. Everything runs on the device of the codes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fgmd.codes import hamming_distance, hamming_pm1, sign_codes

_BLOCK_ENTRIES = 1 << 24  # default query-block size: ~16M query x database entries


def _check_pair(query: torch.Tensor, db: torch.Tensor, what: str, shapes: str) -> None:
    """Raise ValueError unless ``query`` and ``db`` are 2-D with the same number of columns."""
    if query.dim() != 2 or db.dim() != 2 or query.shape[1] != db.shape[1]:
        raise ValueError(f"{what} must be {shapes}; got {tuple(query.shape)} and {tuple(db.shape)}")


def relevance(query_labels: torch.Tensor, db_labels: torch.Tensor) -> torch.Tensor:
    """Which database items share at least one label with each query.

    Args:
        query_labels: ``[Q, L]`` multi-hot labels (any entry ``> 0`` is a label).
        db_labels: ``[N, L]`` multi-hot labels.

    Returns:
        ``[Q, N]`` bool.
    """
    q = torch.as_tensor(query_labels)
    d = torch.as_tensor(db_labels).to(q.device)
    _check_pair(q, d, "labels", "multi-hot [Q, L] and [N, L]")
    return ((q > 0).to(torch.float32) @ (d > 0).to(torch.float32).T) > 0


def _rank(distances: torch.Tensor) -> torch.Tensor:
    """``[Q, N]`` distances -> ``[Q, N]`` long indices, ascending; ties keep index order."""
    return torch.argsort(distances, dim=1, stable=True)


def hamming_ranking(query_codes: torch.Tensor, db_codes: torch.Tensor) -> torch.Tensor:
    """Rank the database for each query by Hamming distance.

    Args:
        query_codes: ``[Q, K]`` real-valued or ±1 codes.
        db_codes: ``[N, K]`` real-valued or ±1 codes.

    Returns:
        ``[Q, N]`` long: row ``i`` lists database indices from nearest to farthest; equal
        distances keep database-index order.
    """
    return _rank(hamming_distance(query_codes, db_codes))


def _blocks(
    query_codes: torch.Tensor,
    db_codes: torch.Tensor,
    query_labels: torch.Tensor,
    db_labels: torch.Tensor,
    chunk_size: int | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validate the inputs, then yield one ``(distances, relevant)`` pair per query block.

    distances: ``[q, N]`` int32 Hamming distances; relevant: ``[q, N]`` bool. Codes are
    binarised once; blocks cover the queries in order, ``chunk_size`` at a time.
    """
    query_codes = torch.as_tensor(query_codes)
    device = query_codes.device
    qb = sign_codes(query_codes, torch.float32)
    db = sign_codes(torch.as_tensor(db_codes).to(device), torch.float32)
    ql = torch.as_tensor(query_labels).to(device)
    dl = torch.as_tensor(db_labels).to(device)
    _check_pair(qb, db, "codes", "[Q, K] and [N, K]")
    _check_pair(ql, dl, "labels", "multi-hot [Q, L] and [N, L]")
    if ql.shape[0] != qb.shape[0] or dl.shape[0] != db.shape[0]:
        raise ValueError(
            f"got {ql.shape[0]} query labels for {qb.shape[0]} query codes and "
            f"{dl.shape[0]} database labels for {db.shape[0]} database codes"
        )
    num_queries, num_db = qb.shape[0], db.shape[0]
    if num_queries == 0 or num_db == 0:
        raise ValueError(f"need at least one query and one database item, got {num_queries}, {num_db}")
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_ENTRIES // num_db)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for start in range(0, num_queries, chunk_size):
        stop = start + chunk_size
        yield hamming_pm1(qb[start:stop], db), relevance(ql[start:stop], dl)


def _ranked_hits(
    query_codes: torch.Tensor,
    db_codes: torch.Tensor,
    query_labels: torch.Tensor,
    db_labels: torch.Tensor,
    chunk_size: int | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The one ranked-relevance computation behind every rank-based metric.

    Yields, per query block, ``(relevant, hits)``:
        relevant: ``[q, N]`` bool, whether the item at rank ``j`` (0-based) is relevant.
        hits: ``[q, N]`` int32, number of relevant items in the top ``j + 1``;
            ``hits[:, -1]`` is the number of relevant items in the whole database.
    """
    for distances, relevant in _blocks(query_codes, db_codes, query_labels, db_labels, chunk_size):
        ranked = relevant.gather(1, _rank(distances))
        yield ranked, torch.cumsum(ranked, dim=1, dtype=torch.int32)


def _cutoffs(ks: Sequence[int], name: str) -> list[int]:
    """Validate cut-offs: a list of positive ints."""
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"{name} must contain positive integers, got {ks}")
    return ks


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """Element-wise ``num / den`` in float64, 0 where ``den == 0``."""
    den = den.to(torch.float64)
    return torch.where(den > 0, num.to(torch.float64) / den.clamp(min=1), 0.0)


def _precision_recall(hits: torch.Tensor, ks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision@k and recall@k per query from a ``[q, N]`` hits block.

    With k clamped to N: precision = relevant in the top k / k; recall = relevant in the
    top k / all relevant (0 when the query has no relevant item).

    Returns:
        ``([q, m], [q, m])`` float64 for ``m = len(ks)``.
    """
    size = torch.as_tensor(ks, dtype=torch.long, device=hits.device).clamp(max=hits.shape[1])
    found = hits[:, size - 1]
    return found / size.to(torch.float64), _safe_ratio(found, hits[:, -1:])


def retrieval_metrics(
    query_codes: torch.Tensor,
    db_codes: torch.Tensor,
    query_labels: torch.Tensor,
    db_labels: torch.Tensor,
    *,
    map_at_k: Sequence[int] = (100,),
    map_at_r: int | None = None,
    precision_at: Sequence[int] = (10, 50, 100),
    recall_at: Sequence[int] | None = None,
    chunk_size: int | None = None,
) -> dict[str, float | int]:
    """Hamming-ranking retrieval metrics, averaged over all queries.

    Per query, with ``rel_j`` the relevance of the item at rank ``j`` (1-based),
    ``P(j)`` the precision of the top ``j`` and ``n`` the number of relevant items:

    - ``"map"``: standard hashing mAP over the full ranking,
      AP = Σ_j P(j)·rel_j / n. A query with no relevant item has AP 0 and still counts
      in the mean (its AP is undefined; counting it as 0 penalises such queries rather
      than silently dropping them).
    - ``"map@{k}"`` for k in ``map_at_k`` (DeepHash-pytorch ``CalcTopMap``):
      Σ_{j≤k} P(j)·rel_j / (relevant items in the top k); 0 when the top k holds none.
    - ``"map@R"`` when ``map_at_r`` is given (FSISR ``mean_average_precision``):
      Σ_{j≤R} P(j)·rel_j / R, always divided by R (also when R > N); ``"R"`` stores R.
    - ``"precision@{k}"``: relevant in the top k / k.
    - ``"recall@{k}"``: relevant in the top k / n; 0 when n = 0.

    Cut-offs k larger than N are clamped to N (precision then divides by N); key names
    keep the requested k.

    Args:
        query_codes: ``[Q, K]`` real-valued or ±1 query codes.
        db_codes: ``[N, K]`` real-valued or ±1 database codes.
        query_labels: ``[Q, L]`` multi-hot query labels.
        db_labels: ``[N, L]`` multi-hot database labels.
        map_at_k: cut-offs for ``map@k``.
        map_at_r: R for ``map@R``; ``None`` or ``0`` leaves ``map@R`` and ``R`` out
            (matching ``EvalConfig.map_at_r = 0``).
        precision_at: cut-offs for ``precision@k``.
        recall_at: cut-offs for ``recall@k``; ``None`` means the same as ``precision_at``.
        chunk_size: queries per block; ``None`` picks about 16M query-item entries per block.

    Returns:
        Plain Python floats under the keys above, plus ints ``"num_queries"``,
        ``"num_database"`` and (with ``map_at_r``) ``"R"``.
    """
    num_db = torch.as_tensor(db_codes).shape[0]
    recall_at = precision_at if recall_at is None else recall_at
    map_at_k, precision_at, recall_at = (
        list(dict.fromkeys(_cutoffs(ks, name)))  # repeats would be counted twice
        for ks, name in zip((map_at_k, precision_at, recall_at), ("map_at_k", "precision_at", "recall_at"))
    )
    if map_at_r is not None and int(map_at_r) < 0:
        raise ValueError(f"map_at_r must be >= 0 (None or 0: no map@R), got {map_at_r}")
    r = int(map_at_r) if map_at_r else 0

    num_queries = 0
    totals: dict[str, float] = {}

    def add(key: str, per_query: torch.Tensor) -> None:
        totals[key] = totals.get(key, 0.0) + float(per_query.sum())

    for relevant, hits in _ranked_hits(query_codes, db_codes, query_labels, db_labels, chunk_size):
        num_queries += relevant.shape[0]
        positions = torch.arange(1, num_db + 1, dtype=torch.float64, device=hits.device)
        precision_at_hits = (hits * relevant) / positions  # P(j)·rel_j, [q, N] float64
        add("map", _safe_ratio(precision_at_hits.sum(1), hits[:, -1]))
        for k in map_at_k:
            found = hits[:, min(k, num_db) - 1]
            add(f"map@{k}", _safe_ratio(precision_at_hits[:, :k].sum(1), found))
        if r:
            add("map@R", precision_at_hits[:, :r].sum(1) / r)
        precision, recall = _precision_recall(hits, precision_at + recall_at)
        for i, k in enumerate(precision_at):
            add(f"precision@{k}", precision[:, i])
        for i, k in enumerate(recall_at, start=len(precision_at)):
            add(f"recall@{k}", recall[:, i])

    results: dict[str, float | int] = {key: total / num_queries for key, total in totals.items()}
    if r:
        results["R"] = r
    results["num_queries"] = num_queries
    results["num_database"] = num_db
    return results


def precision_recall_at_ranks(
    query_codes: torch.Tensor,
    db_codes: torch.Tensor,
    query_labels: torch.Tensor,
    db_labels: torch.Tensor,
    ranks: Sequence[int],
    *,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision@k and recall@k curves over the Hamming ranking (P@k curves).

    Same conventions as ``retrieval_metrics`` (averaged over all queries; recall 0 for a
    query with no relevant item; k clamped to N).

    Args:
        query_codes, db_codes, query_labels, db_labels: as in ``retrieval_metrics``.
        ranks: cut-offs k, each ``>= 1``.
        chunk_size: queries per block, as in ``retrieval_metrics``.

    Returns:
        ``(ranks [m] int64, precision [m] float64, recall [m] float64)`` numpy arrays.
    """
    ranks = _cutoffs(ranks, "ranks")
    precision_sum = torch.zeros(len(ranks), dtype=torch.float64)
    recall_sum = torch.zeros(len(ranks), dtype=torch.float64)
    num_queries = 0
    for _, hits in _ranked_hits(query_codes, db_codes, query_labels, db_labels, chunk_size):
        num_queries += hits.shape[0]
        precision, recall = _precision_recall(hits, ranks)
        precision_sum += precision.sum(0).cpu()
        recall_sum += recall.sum(0).cpu()
    return (
        np.asarray(ranks, dtype=np.int64),
        (precision_sum / num_queries).numpy(),
        (recall_sum / num_queries).numpy(),
    )


def pr_curve_by_radius(
    query_codes: torch.Tensor,
    db_codes: torch.Tensor,
    query_labels: torch.Tensor,
    db_labels: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve of Hamming-ball retrieval, radius ``r = 0..K``.

    At radius r a query retrieves every item at Hamming distance ``<= r``.

    - precision[r]: mean of (relevant retrieved / retrieved) over the queries that retrieve
      at least one item at radius r; NaN when no query retrieves anything (small radii).
    - recall[r]: mean of (relevant retrieved / relevant) over the queries with at least one
      relevant item; NaN when no query has one.

    Args:
        query_codes, db_codes, query_labels, db_labels: as in ``retrieval_metrics``.
        chunk_size: queries per block, as in ``retrieval_metrics``.

    Returns:
        ``(radius [K+1] int64, precision [K+1] float64, recall [K+1] float64)`` numpy arrays.
    """
    bits = torch.as_tensor(query_codes).shape[-1]
    bins = bits + 1
    precision_sum = torch.zeros(bins, dtype=torch.float64)
    precision_count = torch.zeros(bins, dtype=torch.int64)
    recall_sum = torch.zeros(bins, dtype=torch.float64)
    recall_count = 0
    for distances, relevant in _blocks(query_codes, db_codes, query_labels, db_labels, chunk_size):
        q = distances.shape[0]
        row = torch.arange(q, device=distances.device, dtype=distances.dtype)[:, None]
        cells = distances + bins * row  # one bincount bin per (query, distance)
        retrieved = torch.bincount(cells.flatten(), minlength=q * bins).view(q, bins).cumsum(1)
        found = torch.bincount(cells[relevant], minlength=q * bins).view(q, bins).cumsum(1)
        precision_sum += _safe_ratio(found, retrieved).sum(0).cpu()
        precision_count += (retrieved > 0).sum(0).cpu()
        has_relevant = found[:, -1] > 0
        found = found[has_relevant]
        recall_sum += _safe_ratio(found, found[:, -1:]).sum(0).cpu()
        recall_count += int(has_relevant.sum())
    precision = torch.where(precision_count > 0, precision_sum / precision_count.clamp(min=1), torch.nan)
    recall = recall_sum / recall_count if recall_count else torch.full_like(recall_sum, torch.nan)
    return np.arange(bins, dtype=np.int64), precision.numpy(), recall.numpy()


def average_precision_per_query(
    query_codes: torch.Tensor,
    db_codes: torch.Tensor,
    query_labels: torch.Tensor,
    db_labels: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The AP of every query over the full Hamming ranking (ties by database index), as
    averaged into ``retrieval_metrics(...)["map"]``: ``[Q]`` float64, 0 for a query with no
    relevant item. Arguments as for :func:`retrieval_metrics`."""
    num_db = torch.as_tensor(db_codes).shape[0]
    per_query = []
    for relevant, hits in _ranked_hits(query_codes, db_codes, query_labels, db_labels, chunk_size):
        positions = torch.arange(1, num_db + 1, dtype=torch.float64, device=hits.device)
        per_query.append(_safe_ratio(((hits * relevant) / positions).sum(1), hits[:, -1]).cpu())
    return torch.cat(per_query) if per_query else torch.empty(0, dtype=torch.float64)
