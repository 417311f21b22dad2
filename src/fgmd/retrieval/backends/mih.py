"""Exact multi-index hashing (MIH; Norouzi, Punjani & Fleet, CVPR 2012), vectorised in numpy.

Index. The ``K`` bits are split into ``m`` contiguous substrings of ``K // m`` or
``K // m + 1`` bits. For each substring ``j`` the database is sorted (stably, so positions
ascend inside a bucket) by its substring key. The table keeps the permutation
``order [N]``, the codes in that order ``words [N, W]`` (a bucket's codes are contiguous
in memory), the distinct keys present ``bucket_keys [B]`` with their ``bucket_bounds
[B + 1]``, and, when ``2^L`` is small, direct-address offsets ``[2^L + 1]``.

Search, per query. Step ``i = 0, 1, ...`` handles substring ``j = i % m`` at substring
radius ``s = i // m``: it finds the buckets whose key is at Hamming distance exactly ``s``
from the query's substring, either by probing all ``C(L, s)`` keys (offsets lookup or
``np.searchsorted``) or, when that is cheaper, by scanning ``bucket_keys``; gathers their
items and computes full distances. An item is kept only at the first step that can find
it (its smallest substring distance ``s``, the first such ``j``), so nothing is counted
twice. By the pigeonhole principle an item missed by steps ``0..i`` differs in at least
``s + 1`` bits on substrings ``0..j`` and ``s`` bits on the others: its distance is at
least ``m*s + j + 1 = i + 1``. After step ``i`` every item within distance ``i`` is known.

* top-k: stop once ``k`` found items lie within ``i``. The k-th distance ``t`` is then
  ``<= i``, so every item at distance ``<= t`` has been found and ``select_topk`` ranks
  them exactly, ties by position.
* radius ``r``: stop after step ``r``.

Results are exact by construction. Whether a query is worth probing depends on its k-th
distance ``t`` (the steps run up to ``t``), unknown in advance. Once ``MIN_EVIDENCE`` items
are found, ``t`` is estimated from the distances found so far, each count divided by the
fraction of codes at that distance that the steps so far can find (exact combinatorics,
assuming the differing bits of a pair fall anywhere with equal chance). When the expected
cost of the steps up to ``t`` (a cost model in units of one item of a linear scan)
exceeds a scan of all ``N`` items, the query switches to the exact linear scan; before an
estimate exists, at most a scan's worth is spent. So queries far from everything (random
codes, small archives) cost about one scan, and results never depend on the switch.

Routing. A query that switches to the scan has already paid for its first steps (up to a
scan's worth), so on structureless codes (random 64-bit codes at 1M items: the k-th code is
17 bits away) MIH cost about twice a scan. The backend therefore remembers whether its last
``ROUTE_WINDOW`` probed queries switched; while more than ``ROUTE_THRESHOLD`` of them did, and
the last one did, queries go straight to the scan, except every ``ROUTE_PROBE_EVERY``-th one,
which still probes so that the statistic follows the queries (the same index can serve close
and far queries: one probed query that does not switch ends the routing). Results are
identical either way; only the time changes.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math

import numpy as np

from fgmd.codes import popcount_rows, word_view

from ..ranking import Hits, TopK, select_radius, select_topk, stack_topk
from .numpy_brute import NumpyBruteForce

# Longest substring: its bits must fit one uint64 read from at most 8 bytes.
MAX_SUBSTRING_BITS = 56
# Longest substring chosen by default: longer ones make neighbourhoods (C(L, s) probes) and
# direct-address tables (2^L offsets) expensive; measured best on 32- and 64-bit codes.
DEFAULT_MAX_SUBSTRING_BITS = 24
# Direct-address bucket offsets when 2^L <= max(this, 8 N); searchsorted otherwise.
_DIRECT_TABLE_MIN = 1 << 20
# Cost model, in units of one item of a linear scan (~1.5 ns; measured on a 2-core EPYC,
# order-of-magnitude constants: cache behaviour changes them by 2-3x).
STEP_COST = 20_000  # fixed numpy overhead of one step (~30 numpy calls, ~30 us)
PROBE_COST = 16  # one bucket lookup (a cache miss) and its range bookkeeping
BUCKET_SCAN_COST = 2  # one bucket key tested by a bucket scan
CANDIDATE_COST = 4  # gather, XOR, m popcounts and bookkeeping of one candidate
# Items found before the k-th distance is estimated from them (fewer: too noisy).
MIN_EVIDENCE = 32
# Routing straight to the scan (module docstring): over the last ROUTE_WINDOW probed
# queries, more than ROUTE_THRESHOLD switched; every ROUTE_PROBE_EVERY-th query still probes.
ROUTE_WINDOW = 32
ROUTE_THRESHOLD = 0.75
ROUTE_PROBE_EVERY = 8


def default_substrings(n_items: int, bits: int) -> int:
    """Number of substrings ``m``: ``K / log2(N)`` rounded (Norouzi et al.'s choice of
    substrings about ``log2 N`` bits long), but substrings of at most 24 bits."""
    m = round(bits / math.log2(max(n_items, 2)))
    return min(bits, max(m, 1, math.ceil(bits / DEFAULT_MAX_SUBSTRING_BITS)))


def substring_bounds(bits: int, substrings: int) -> list[tuple[int, int]]:
    """Split ``bits`` into ``substrings`` contiguous ``[start, stop)`` ranges, longest first."""
    base, extra = divmod(bits, substrings)
    bounds, start = [], 0
    for j in range(substrings):
        stop = start + base + (j < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def substring_keys(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Bits ``[start, stop)`` of each packed code as an integer (bit ``start`` most
    significant): ``[N, K/8]`` uint8 -> ``[N]`` uint64."""
    first, last = start // 8, (stop - 1) // 8
    value = np.zeros(len(packed), dtype=np.uint64)
    for byte in range(first, last + 1):
        value <<= np.uint64(8)
        value |= packed[:, byte]
    value >>= np.uint64(8 * (last + 1) - stop)
    value &= np.uint64((1 << (stop - start)) - 1)
    return value


@functools.lru_cache(maxsize=256)
def _flip_masks(length: int, weight: int) -> np.ndarray:
    """All ``C(length, weight)`` ``length``-bit masks with ``weight`` bits set, uint64."""
    combos = np.array(list(itertools.combinations(range(length), weight)), dtype=np.uint64)
    combos = combos.reshape(math.comb(length, weight), weight)
    masks = np.bitwise_or.reduce(np.left_shift(np.uint64(1), combos), axis=1)
    masks.flags.writeable = False
    return masks


def _substring_word_masks(bits: int, bounds: list[tuple[int, int]]) -> np.ndarray:
    """``[m, W]`` masks selecting each substring's bits in the word view of packed codes."""
    selector = np.zeros((len(bounds), bits), dtype=bool)
    for j, (start, stop) in enumerate(bounds):
        selector[j, start:stop] = True
    return word_view(np.packbits(selector, axis=1, bitorder="big"))


def _inverse_found_fractions(lengths: list[int], bits: int) -> np.ndarray:
    """``[K + 1 steps, K + 1 distances]``: ``1 / f`` where ``f`` is the fraction of the codes
    at distance ``d`` from the query found by steps ``0..i``, were the ``d`` differing bits
    equally likely anywhere (0 where ``f == 0``).

    A code is still missed after step ``i`` iff its sub-distance on every substring ``j``
    is at least ``(i - j) // m + 1``; counting such bit patterns is a product of
    polynomials (one per substring, coefficients ``C(L_j, x)``).
    """
    m = len(lengths)
    totals = np.array([math.comb(bits, d) for d in range(bits + 1)], dtype=np.float64)
    inverse = np.zeros((bits + 1, bits + 1))
    for step in range(bits + 1):
        missed = np.ones(1)
        for j, length in enumerate(lengths):
            least = (step - j) // m + 1
            missed = np.convolve(missed, [math.comb(length, x) if x >= least else 0.0 for x in range(length + 1)])
        found = 1.0 - missed[: bits + 1] / totals
        inverse[step, found > 1e-12] = 1.0 / found[found > 1e-12]
    return inverse


def _concat_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Indices of the concatenated ranges ``[starts_i, stops_i)``, in order."""
    lengths = stops - starts
    ends = np.cumsum(lengths, dtype=np.int64)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1], dtype=np.int64)


class _SubstringTable:
    """The buckets of one substring (see the module docstring)."""

    def __init__(self, keys: np.ndarray, length: int, words: np.ndarray) -> None:
        n_items = len(keys)
        index_dtype = np.int32 if n_items < 2**31 else np.int64
        self.length = length
        self.order = np.argsort(keys, kind="stable").astype(index_dtype)
        self.words = words[self.order]
        sorted_keys = keys[self.order]
        first_of_bucket = np.flatnonzero(np.diff(sorted_keys)) + 1
        self.bucket_keys = sorted_keys[np.concatenate(([0], first_of_bucket))]
        self.bucket_bounds = np.concatenate(([0], first_of_bucket, [n_items])).astype(index_dtype)
        self.offsets: np.ndarray | None = None  # direct table: bucket range of every possible key
        if (1 << length) <= max(_DIRECT_TABLE_MIN, 8 * n_items):
            self.offsets = np.zeros((1 << length) + 1, dtype=index_dtype)
            np.cumsum(np.bincount(keys.astype(np.int64), minlength=1 << length), out=self.offsets[1:])

    @property
    def nbytes(self) -> int:
        arrays = (self.order, self.words, self.bucket_keys, self.bucket_bounds, self.offsets)
        return sum(a.nbytes for a in arrays if a is not None)

    def probe(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bucket ``[start, stop)`` (rows of ``order``) of each probe key; empty if absent."""
        if self.offsets is not None:
            return self.offsets[probes], self.offsets[probes + 1]
        found = np.minimum(np.searchsorted(self.bucket_keys, probes), len(self.bucket_keys) - 1)
        hit = self.bucket_keys[found] == probes
        return self.bucket_bounds[found], np.where(hit, self.bucket_bounds[found + 1], self.bucket_bounds[found])

    def scan(self, query_key: np.uint64, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Buckets whose key is at distance exactly ``radius`` from ``query_key``."""
        chosen = np.flatnonzero(np.bitwise_count(self.bucket_keys ^ query_key) == radius)
        return self.bucket_bounds[chosen], self.bucket_bounds[chosen + 1]


class MultiIndexHashing:
    """Exact MIH backend over ``db_packed [N, K/8]`` uint8 codes (N >= 1).

    Args:
        db_packed: the database codes.
        bits: code length ``K``.
        substrings: number of substrings ``m``; ``None`` -> ``default_substrings(N, K)``.
        fallback: switch a query to the linear scan when probing is expected to cost more,
            and route queries straight to it while most recent ones switched (the results
            are the same either way; ``False`` forces MIH, e.g. for tests).

    Attributes:
        routed: queries answered by the scan without probing (routing), since construction.
    """

    name = "mih"

    def __init__(
        self, db_packed: np.ndarray, bits: int, substrings: int | None = None, *, fallback: bool = True
    ) -> None:
        n_items = len(db_packed)
        substrings = default_substrings(n_items, bits) if substrings is None else substrings
        if not 1 <= substrings <= bits or -(-bits // substrings) > MAX_SUBSTRING_BITS:
            raise ValueError(
                f"MIH needs 1 <= substrings <= {bits} with substrings of at most "
                f"{MAX_SUBSTRING_BITS} bits, got {substrings} for {bits}-bit codes"
            )
        self.bits = bits
        self.fallback = fallback
        self.bounds = substring_bounds(bits, substrings)
        self.brute = NumpyBruteForce(db_packed, bits)
        self.tables = [
            _SubstringTable(substring_keys(db_packed, start, stop), stop - start, self.brute.words)
            for start, stop in self.bounds
        ]
        self._word_masks = _substring_word_masks(bits, self.bounds)  # [m, W]
        # Step i = m*s + j finds an item first iff its sub-distances are >= s + 1 on
        # substrings before j and >= s on the others (== s on j by construction).
        self._first_found = [
            [s + 1] * j + [s] * (substrings - j) for s, j in (divmod(step, substrings) for step in range(bits + 1))
        ]
        self._inverse_found = _inverse_found_fractions([stop - start for start, stop in self.bounds], bits)
        # Per step: probe (True) or scan the buckets, its lookup cost, expected candidates.
        self._plans = [self._plan(step) for step in range(bits + 1)]
        self._cumulative_cost = np.cumsum(
            [STEP_COST + lookup + candidates * CANDIDATE_COST for _, lookup, candidates in self._plans]
        )
        self._switched: collections.deque[bool] = collections.deque(maxlen=ROUTE_WINDOW)
        self._served = 0
        self.routed = 0

    def __len__(self) -> int:
        return len(self.brute)

    @property
    def substrings(self) -> int:
        return len(self.tables)

    @property
    def nbytes(self) -> int:
        """Memory held by the MIH tables (beyond the database codes themselves)."""
        return sum(table.nbytes for table in self.tables)

    def _plan(self, step: int) -> tuple[bool, float, float]:
        """Step ``step``: probe (True) or scan the buckets, the cost of that lookup, and the
        number of candidates expected were the buckets uniformly filled."""
        radius, j = divmod(step, len(self.tables))
        table = self.tables[j]
        probes = math.comb(table.length, radius)
        probe_cost = probes * PROBE_COST
        scan_cost = len(table.bucket_keys) * BUCKET_SCAN_COST
        candidates = min(len(self), probes * len(self) / 2**table.length)
        return probe_cost <= scan_cost, min(probe_cost, scan_cost), candidates

    def _expected_cost(self, first: int, last: int) -> float:
        """Expected cost of steps ``first..last`` (inclusive; 0 when ``last < first``)."""
        if last < first:
            return 0.0
        return float(self._cumulative_cost[last] - (self._cumulative_cost[first - 1] if first else 0.0))

    def _query_keys(self, queries_packed: np.ndarray) -> np.ndarray:
        return np.stack([substring_keys(queries_packed, start, stop) for start, stop in self.bounds], axis=1)

    def _buckets(self, step: int, query_key: np.uint64) -> tuple[slice | np.ndarray | None, int]:
        """Rows (of the step's table order) of the buckets step ``step`` visits, and their count."""
        s, j = divmod(step, len(self.tables))
        table = self.tables[j]
        if s > table.length:
            return None, 0
        if self._plans[step][0]:
            starts, stops = table.probe(query_key ^ _flip_masks(table.length, s))
        else:
            starts, stops = table.scan(query_key, s)
        if len(starts) == 1:
            return slice(int(starts[0]), int(stops[0])), int(stops[0] - starts[0])
        total = int((stops - starts).sum())
        return (_concat_ranges(starts, stops) if total else None), total

    def _first_found_items(self, step: int, rows: slice | np.ndarray, query_words: np.ndarray):
        """``(distances, positions)`` of the items in ``rows`` that step ``step`` finds first."""
        j = step % len(self.tables)
        table = self.tables[j]
        xor = table.words[rows] ^ query_words  # [c, W]
        positions = table.order[rows]
        keep = None
        for other, threshold in enumerate(self._first_found[step]):
            if other != j and threshold:
                first = popcount_rows(xor & self._word_masks[other]) >= threshold
                keep = first if keep is None else keep & first
        if keep is not None:
            xor, positions = xor[keep], positions[keep]
        return popcount_rows(xor), positions

    def _candidates(self, query_keys: np.ndarray, query_words: np.ndarray, k: int | None, radius: int | None):
        """Run steps until the stopping rule holds (``k`` for top-k, else ``radius``).

        Returns ``(distances, positions)`` of every item found, a superset of the answer,
        or ``None`` when finishing is expected to cost more than a linear scan.
        """
        m, bits, n_items = len(self.tables), self.bits, len(self)
        target = None if radius is None else min(radius, bits)
        last_step = bits if target is None else target  # radius search: stop after this step
        found_distances, found_positions = [], []
        histogram = np.zeros(bits + 1, dtype=np.int64)
        found = 0
        spent = 0.0
        for step in range(bits + 1):  # step == bits finds everything: each code is within K
            if self.fallback:
                if k is not None and found >= min(k, MIN_EVIDENCE):
                    # Estimate the k-th distance: the counts found so far at each distance,
                    # divided by the fraction of such codes the steps so far can find.
                    estimated = np.cumsum(histogram * self._inverse_found[step - 1])
                    target = int(np.searchsorted(estimated, k)) if estimated[-1] >= k else None
                if target is None:  # not known yet: spend at most a scan's worth
                    ahead = spent + self._expected_cost(step, step)
                else:
                    ahead = self._expected_cost(step, target)
                if ahead > n_items:
                    return None
            rows, total = self._buckets(step, query_keys[step % m])
            spent += STEP_COST + self._plans[step][1] + total * CANDIDATE_COST
            if self.fallback and total * CANDIDATE_COST > n_items:
                return None
            if total and rows is not None:
                distances, positions = self._first_found_items(step, rows, query_words)
                found_distances.append(distances)
                found_positions.append(positions)
                histogram += np.bincount(distances, minlength=bits + 1)
                found += len(distances)
            # After step i = m*s + j every item within distance i is found.
            if (histogram[: step + 1].sum() >= k) if k is not None else step >= last_step:
                break
        return (
            np.concatenate(found_distances or [np.empty(0, np.int32)]),
            np.concatenate(found_positions or [np.empty(0, np.int64)]),
        )

    def _route_to_scan(self) -> bool:
        """Whether the next query goes straight to the scan (module docstring, Routing)."""
        self._served += 1
        window = self._switched
        if not self.fallback or len(window) < ROUTE_WINDOW // 2 or self._served % ROUTE_PROBE_EVERY == 0:
            return False
        if not window[-1]:  # the last probed query did not switch: probe until the window says so
            return False
        if sum(window) <= ROUTE_THRESHOLD * len(window):
            return False
        self.routed += 1
        return True

    def _probe(self, keys: np.ndarray, words: np.ndarray, k: int | None, radius: int | None):
        """``_candidates`` unless the query is routed to the scan (then ``None``)."""
        if self._route_to_scan():
            return None
        found = self._candidates(keys, words, k, radius)
        self._switched.append(found is None)
        return found

    def topk(self, queries_packed: np.ndarray, k: int) -> TopK:
        """Exact top-``min(k, N)`` per query (``[Q, K/8]`` packed queries)."""
        k_eff = min(k, len(self))
        rows = []
        for keys, words in zip(self._query_keys(queries_packed), word_view(queries_packed)):
            found = self._probe(keys, words, k_eff, None)
            if found is None:
                rows.append(select_topk(self.brute.distances(words), k_eff, self.bits))
            else:
                rows.append(select_topk(found[0], k_eff, self.bits, positions=found[1]))
        return stack_topk(rows, k_eff)

    def radius(self, queries_packed: np.ndarray, radius: int) -> list[Hits]:
        """All items within ``radius`` per query: one ``Hits(distances, indices)`` each."""
        results = []
        for keys, words in zip(self._query_keys(queries_packed), word_view(queries_packed)):
            found = self._probe(keys, words, None, radius)
            if found is None:
                results.append(select_radius(self.brute.distances(words), radius))
            else:
                results.append(select_radius(found[0], radius, positions=found[1]))
        return results
