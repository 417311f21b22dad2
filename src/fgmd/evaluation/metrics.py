"""Hamming-ranking retrieval metrics for hash codes (docs/DESIGN.md §4).

Shapes: ``Q`` queries, ``N`` database items, ``K`` bits, ``L`` classes.

Conventions, shared by every function here:

- Codes are ``[*, K]`` real-valued (e.g. tanh outputs) or ±1, read with the sign rule of
  ``fgmd.codes`` (``0`` maps to ``+1``).
- Relevance: a query and a database item are relevant when they share at least one label.
  Labels are multi-hot ``[*, L]`` (single-label data is one-hot); any entry ``> 0`` counts
  as a label. 1-D integer labels are read as class indices (:func:`label_pair`).
- Ranking: ascending Hamming distance. Two treatments of equal distances are reported:

  * **index-broken** (``map``, ``map@k``, ``precision@k``, ...): ties broken by database index
    (a stable sort), the convention of the hashing toolkits. With ``K``-bit codes every query
    has only ``K + 1`` distinct distances, so hundreds of items tie and the score depends on
    how the database happens to be ordered: on a class-sorted database constant codes score
    well above chance.
  * **tie-aware** (``map_tie``, ``map_tie@k``, ``precision_tie@k``): the expected value of the
    same measure over all orders of the tied items (McSherry & Najork, ECIR 2008; He et al.,
    CVPR 2018). It depends only on the codes, not on the database order. Computed in closed
    form from each query's histograms of distances of all items and of relevant items,
    ``O(K)`` per query (plus ``O(k)`` for the cut-off measures), see ``_tie_aware``.

- Cut-offs ``k`` larger than ``N`` are clamped to ``N``.

All metrics are computed a block of queries at a time (``chunk_size`` queries per block, by
default about 16M query-item entries per block), so memory stays bounded for large
databases. Everything runs on the device of the codes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fgmd.codes import hamming_distance, hamming_pm1, sign_codes

_BLOCK_ENTRIES = 1 << 24  # default query-block size: ~16M query x database entries


def _check_pair(query: torch.Tensor, db: torch.Tensor, what: str, shapes: str) -> None:
    """Raise ValueError unless ``query`` and ``db`` are 2-D with the same number of columns."""
    if query.dim() != 2 or db.dim() != 2 or query.shape[1] != db.shape[1]:
        raise ValueError(f"{what} must be {shapes}; got {tuple(query.shape)} and {tuple(db.shape)}")


def label_pair(query_labels, db_labels, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and database labels as multi-hot ``[Q, L]`` and ``[N, L]`` tensors (on ``device``).

    Multi-hot (or one-hot) 2-D labels pass through. 1-D integer labels ``[Q]`` / ``[N]`` are
    class ids (both sides in one numbering) and become one-hot over the distinct ids.

    Raises:
        ValueError: the shapes do not pair up, 1-D labels are not integers, or an index is negative.
    """
    q = torch.as_tensor(query_labels)
    d = torch.as_tensor(db_labels).to(q.device if device is None else device)
    q = q.to(d.device)
    if q.dim() == 1 and d.dim() == 1:
        if q.is_floating_point() or d.is_floating_point() or q.dtype == torch.bool or d.dtype == torch.bool:
            raise ValueError(
                f"1-D labels must be integer class indices, got {q.dtype} and {d.dtype} "
                "(pass multi-hot [Q, L] and [N, L] labels otherwise)"
            )
        if (q.numel() and int(q.min()) < 0) or (d.numel() and int(d.min()) < 0):
            raise ValueError("class-index labels must be >= 0")
        # one column per distinct class id (ids may be large or sparse)
        classes, index = torch.unique(torch.cat([q.long(), d.long()]), return_inverse=True)
        q = torch.nn.functional.one_hot(index[: len(q)], len(classes))
        d = torch.nn.functional.one_hot(index[len(q) :], len(classes))
    _check_pair(q, d, "labels", "multi-hot [Q, L] and [N, L] (or 1-D class indices [Q] and [N])")
    return q, d


def relevance(query_labels: torch.Tensor, db_labels: torch.Tensor) -> torch.Tensor:
    """Which database items share at least one label with each query.

    Args:
        query_labels: ``[Q, L]`` multi-hot labels (any entry ``> 0`` is a label), or ``[Q]``
            integer class indices (:func:`label_pair`).
        db_labels: ``[N, L]`` multi-hot labels, or ``[N]`` class indices.

    Returns:
        ``[Q, N]`` bool.
    """
    q, d = label_pair(query_labels, db_labels)
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
    _check_pair(qb, db, "codes", "[Q, K] and [N, K]")
    ql, dl = label_pair(query_labels, db_labels, device)
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


def _ranked(distances: torch.Tensor, relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one ranked-relevance computation behind every index-broken metric, for one block of
    ``_blocks``: ``(relevant, hits)``.

    relevant: ``[q, N]`` bool, whether the item at rank ``j`` (0-based) is relevant.
    hits: ``[q, N]`` int32, number of relevant items in the top ``j + 1``; ``hits[:, -1]`` is the
    number of relevant items in the whole database.
    """
    ranked = relevant.gather(1, _rank(distances))
    return ranked, torch.cumsum(ranked, dim=1, dtype=torch.int32)


def _harmonic(n: int, device: torch.device) -> torch.Tensor:
    """``[n + 1]`` float64 harmonic numbers ``H[i] = 1 + 1/2 + ... + 1/i`` (``H[0] = 0``)."""
    inverse = 1.0 / torch.arange(1, n + 1, dtype=torch.float64, device=device)
    return torch.cat([torch.zeros(1, dtype=torch.float64, device=device), torch.cumsum(inverse, 0)])


def _expected_precision_sum(
    size: torch.Tensor,
    relevant: torch.Tensor,
    before: torch.Tensor,
    relevant_before: torch.Tensor,
    taken: torch.Tensor,
    harmonic: torch.Tensor,
) -> torch.Tensor:
    """Expected ``Σ rel_t · P(before + t)`` over the first ``taken`` positions of a tie group.

    A group of ``size`` tied items (``relevant`` of them relevant) follows ``before`` items
    (``relevant_before`` relevant), in uniformly random order. Position ``t`` of the group is
    relevant with probability ``r/n``; given that, the group's first ``t`` positions hold
    ``1 + (t-1)(r-1)/(n-1)`` relevant items on average, so the sum is
    ``(r/n) Σ_{t≤m} (a + b(t-1)) / (B + t)`` with ``a = R_B + 1``, ``b = (r-1)/(n-1)``, which is
    ``(r/n) [b·m + (a - b(1 + B)) (H[B+m] - H[B])]`` with harmonic numbers ``H``.

    All arguments are integer tensors of one shape (``taken <= size``); returns float64.
    """
    n = size.to(torch.float64)
    r = relevant.to(torch.float64)
    b = torch.where(size > 1, (r - 1) / (n - 1).clamp(min=1), 0.0)
    a = relevant_before.to(torch.float64) + 1
    tail = harmonic[before + taken] - harmonic[before]
    total = b * taken + (a - b * (1 + before)) * tail
    return torch.where(size > 0, r / n.clamp(min=1) * total, 0.0)


def _log_choose(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def _tie_aware(
    distances: torch.Tensor,
    relevant: torch.Tensor,
    bins: int,
    map_at_k: list[int],
    precision_at: list[int],
) -> dict[str, torch.Tensor]:
    """Tie-aware AP, AP@k and P@k per query: expectations over all orders of tied items.

    Args:
        distances: ``[q, N]`` int Hamming distances in ``[0, bins - 1]``.
        relevant: ``[q, N]`` bool.
        bins: ``K + 1``.

    The items at one distance form a tie group (``n_g`` items, ``r_g`` relevant, after
    ``B_g`` items of which ``R_g`` are relevant). Per query, with ``R`` relevant items:

    - ``map_tie``: ``Σ_g S_g / R`` with ``S_g`` the expected precision sum of the whole
      group (``_expected_precision_sum``); 0 when ``R = 0``, as for ``map``.
    - ``map_tie@k``: the same measure as ``map@k`` (precision sum over the top ``k`` divided by
      the relevant items in the top ``k``), averaged over orders. The top ``k`` holds the
      groups before the boundary group ``g*`` and its first ``m = k - B_g*`` items, of which
      ``X`` are relevant, ``X`` hypergeometric(``n_g*``, ``r_g*``, ``m``). Given ``X = x`` those
      ``m`` items are a random order of a group of ``m`` with ``x`` relevant, so
      ``E = Σ_x P(X = x) (Σ_{g<g*} S_g + S(m, x)) / (R_g* + x)`` (0 where the top ``k`` holds no
      relevant item).
    - ``precision_tie@k``: ``(R_g* + m r_g* / n_g*) / k``.

    Returns ``[q]`` float64 per key.
    """
    q, num_db = distances.shape
    device = distances.device
    row = torch.arange(q, device=device, dtype=torch.long)[:, None]
    cells = (distances.long() + bins * row).flatten()
    size = torch.bincount(cells, minlength=q * bins).view(q, bins)
    rel = torch.bincount(cells[relevant.flatten()], minlength=q * bins).view(q, bins)
    before = torch.cumsum(size, 1) - size
    rel_before = torch.cumsum(rel, 1) - rel
    harmonic = _harmonic(num_db, device)
    group_sums = _expected_precision_sum(size, rel, before, rel_before, size, harmonic)  # [q, bins]
    total_rel = rel.sum(1)
    out = {"map_tie": _safe_ratio(group_sums.sum(1), total_rel)}
    sums_before = torch.cumsum(group_sums, 1) - group_sums
    ends = torch.cumsum(size, 1)

    def boundary(k: int) -> tuple[torch.Tensor, ...]:
        """Per query: size, relevant, items and relevant before, items taken, of group ``g*``."""
        k = min(k, num_db)
        g = torch.searchsorted(ends, torch.full((q, 1), k, dtype=ends.dtype, device=device))
        pick = lambda t: t.gather(1, g)[:, 0]  # noqa: E731
        return pick(size), pick(rel), pick(before), pick(rel_before), k - pick(before), pick(sums_before)

    for k in map_at_k:
        n, r, b, rb, m, full = boundary(k)
        most = int(torch.minimum(r, m).max()) if q else 0
        x = torch.arange(most + 1, device=device, dtype=torch.float64)[None, :]  # [1, X]
        nf, rf, mf = (t.to(torch.float64)[:, None] for t in (n, r, m))
        valid = (x <= rf) & (x <= mf) & (mf - x <= nf - rf)
        log_p = _log_choose(rf, torch.minimum(x, rf)) + _log_choose(
            nf - rf, torch.minimum((mf - x).clamp(min=0), nf - rf)
        )
        p = torch.where(valid, torch.exp(log_p - _log_choose(nf, mf)), 0.0)
        xs = x.long().expand(q, -1)
        expand = lambda t: t[:, None].expand(q, most + 1)  # noqa: E731
        taken = expand(m)
        partial = _expected_precision_sum(taken, xs.clamp(max=taken), expand(b), expand(rb), taken, harmonic)
        found = rb[:, None] + xs
        value = _safe_ratio(full[:, None] + partial, found)
        out[f"map_tie@{k}"] = (p * value).sum(1)
    for k in precision_at:
        n, r, _, rb, m, _ = boundary(k)
        out[f"precision_tie@{k}"] = (rb + m * r.to(torch.float64) / n.clamp(min=1)) / min(k, num_db)
    return out


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
    - ``"map_tie"``, ``"map_tie@{k}"`` (k in ``map_at_k``), ``"precision_tie@{k}"`` (k in
      ``precision_at``): the tie-aware versions of ``map``, ``map@k`` and ``precision@k``,
      their expectations over all orders of items at equal distance (module docstring).
      The keys without ``_tie`` break ties by database index.

    Cut-offs k larger than N are clamped to N (precision then divides by N); key names
    keep the requested k.

    Args:
        query_codes: ``[Q, K]`` real-valued or ±1 query codes.
        db_codes: ``[N, K]`` real-valued or ±1 database codes.
        query_labels: ``[Q, L]`` multi-hot query labels, or ``[Q]`` integer class indices.
        db_labels: ``[N, L]`` multi-hot database labels, or ``[N]`` integer class indices.
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

    bins = torch.as_tensor(query_codes).shape[-1] + 1
    for distances, unranked in _blocks(query_codes, db_codes, query_labels, db_labels, chunk_size):
        relevant, hits = _ranked(distances, unranked)
        num_queries += relevant.shape[0]
        for key, per_query in _tie_aware(distances, unranked, bins, map_at_k, precision_at).items():
            add(key, per_query)
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
    for _, hits in itertools.starmap(_ranked, _blocks(query_codes, db_codes, query_labels, db_labels, chunk_size)):
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
    tie_aware: bool = False,
) -> torch.Tensor:
    """The AP of every query over the full Hamming ranking (ties by database index), as
    averaged into ``retrieval_metrics(...)["map"]``: ``[Q]`` float64, 0 for a query with no
    relevant item; with ``tie_aware`` the tie-aware AP averaged into ``"map_tie"``.
    Arguments as for :func:`retrieval_metrics`."""
    num_db = torch.as_tensor(db_codes).shape[0]
    per_query = []
    if tie_aware:
        bins = torch.as_tensor(query_codes).shape[-1] + 1
        for distances, relevant in _blocks(query_codes, db_codes, query_labels, db_labels, chunk_size):
            per_query.append(_tie_aware(distances, relevant, bins, [], [])["map_tie"].cpu())
        return torch.cat(per_query)
    for relevant, hits in itertools.starmap(
        _ranked, _blocks(query_codes, db_codes, query_labels, db_labels, chunk_size)
    ):
        positions = torch.arange(1, num_db + 1, dtype=torch.float64, device=hits.device)
        per_query.append(_safe_ratio(((hits * relevant) / positions).sum(1), hits[:, -1]).cpu())
    return torch.cat(per_query) if per_query else torch.empty(0, dtype=torch.float64)
