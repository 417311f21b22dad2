"""Every search backend against a slow, obvious reference: full distance matrix from ±1
codes, Python ``sorted`` by (distance, index). Clustered short codes make many ties."""

import numpy as np
import pytest

from fgmd.codes import unpack_codes
from fgmd.retrieval import Hits, radius_search, resolve_backend, search_topk
from fgmd.retrieval.backends import MultiIndexHashing, NumpyBruteForce, faiss_available
from fgmd.retrieval.backends.mih import ROUTE_PROBE_EVERY

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
BACKENDS = ["numpy", pytest.param("faiss", marks=needs_faiss), "mih"]


def clustered_codes(rng, n, bits, centres, flip=0.1):
    """Packed codes of trained-hashing-like data: class centres with bit-flip noise."""
    labels = rng.integers(0, len(centres), n)
    bits_set = centres[labels] ^ (rng.random((n, bits)) < flip)
    return np.packbits(bits_set, axis=1)


def make_data(bits, n=5000, n_queries=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (8, bits)).astype(bool)
    db = clustered_codes(rng, n, bits, centres)
    queries = np.concatenate(
        [
            db[:4],  # exact duplicates of database items
            clustered_codes(rng, n_queries - 8, bits, centres),
            rng.integers(0, 256, (4, bits // 8), dtype=np.uint8),  # far from everything
        ]
    )
    return queries, db


def reference_rankings(queries, db, bits):
    """Per query, all database indices sorted by (distance, index), and the distances."""
    q = unpack_codes(queries, bits).astype(np.int64)
    d = unpack_codes(db, bits).astype(np.int64)
    distances = (bits - q @ d.T) // 2
    rankings = [sorted(range(len(db)), key=lambda i, row=row: (row[i], i)) for row in distances]
    return rankings, distances


@pytest.fixture(scope="module", params=[16, 32, 64])
def data(request):
    bits = request.param
    queries, db = make_data(bits)
    rankings, distances = reference_rankings(queries, db, bits)
    return bits, queries, db, rankings, distances


def assert_topk_matches(result, rankings, distances, k):
    k_eff = min(k, len(rankings[0]))
    assert result.indices.shape == result.distances.shape == (len(rankings), k_eff)
    assert result.indices.dtype == np.int64 and result.distances.dtype == np.int32
    for row, ranking in enumerate(rankings):
        assert result.indices[row].tolist() == ranking[:k_eff], f"query {row}"
        np.testing.assert_array_equal(result.distances[row], distances[row, ranking[:k_eff]])


def test_reference_has_many_ties(data):
    bits, _, _, rankings, distances = data
    kth = np.sort(distances, axis=1)[:, 99]
    ties = (distances == kth[:, None]).sum(axis=1)
    assert np.median(ties) > 50  # the tie order genuinely matters


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 10, 100, 6000])
def test_topk_equals_reference(data, backend, k):
    _, queries, db, rankings, distances = data
    assert_topk_matches(search_topk(queries, db, k, backend), rankings, distances, k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("radius", [0, 2, 5, 100])
def test_radius_equals_reference(data, backend, radius):
    _, queries, db, rankings, distances = data
    results = radius_search(queries, db, radius, backend)
    assert len(results) == len(queries)
    for row, hits in enumerate(results):
        assert isinstance(hits, Hits)
        found, indices = hits  # faiss order, as TopK: distances first
        assert found is hits.distances and indices is hits.indices
        expected = [i for i in rankings[row] if distances[row, i] <= radius]
        assert indices.dtype == np.int64 and found.dtype == np.int32
        assert indices.tolist() == expected
        np.testing.assert_array_equal(found, distances[row, expected])


@pytest.mark.parametrize("bits,substrings", [(16, 1), (16, 2), (32, 2), (32, 4), (64, 2), (64, 4)])
def test_mih_probing_is_exact(bits, substrings):
    """MIH itself (no fallback to the scan), including 32-bit substrings (bucket scans)."""
    queries, db = make_data(bits, n=3000, seed=bits + substrings)
    rankings, distances = reference_rankings(queries, db, bits)
    mih = MultiIndexHashing(db, bits, substrings, fallback=False)
    assert mih.substrings == substrings
    for k in (1, 10, 100, 3001):
        assert_topk_matches(mih.topk(queries, k), rankings, distances, k)
    for radius in (0, 3, 7):
        for row, (_, indices) in enumerate(mih.radius(queries, radius)):
            assert indices.tolist() == [i for i in rankings[row] if distances[row, i] <= radius]


def test_mih_fallback_switches_per_query_and_stays_exact(monkeypatch):
    """Near queries are answered by probing, far ones by the scan; both exactly."""
    bits = 32
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 2, (4, bits)).astype(bool)
    db = clustered_codes(rng, 60_000, bits, centres, flip=0.03)
    queries = np.concatenate([db[:6], rng.integers(0, 256, (6, bits // 8), dtype=np.uint8)])
    mih = MultiIndexHashing(db, bits, 2)
    scans = []
    original = NumpyBruteForce.distances

    def counting(self, query_words):
        scans.append(1)
        return original(self, query_words)

    monkeypatch.setattr(NumpyBruteForce, "distances", counting)
    result = mih.topk(queries, 50)
    assert 0 < len(scans) < len(queries)
    expected = NumpyBruteForce(db, bits)
    for row, query in enumerate(queries):
        distances = original(expected, query.view(np.uint32))
        order = np.lexsort((np.arange(len(db)), distances))[:50]
        assert result.indices[row].tolist() == order.tolist()


@needs_faiss
def test_faiss_tie_run_longer_than_its_shortlist():
    """All items equidistant: faiss's shortlist cannot hold the ties, range search must."""
    rng = np.random.default_rng(3)
    db = np.repeat(rng.integers(0, 256, (3, 2), dtype=np.uint8), 400, axis=0)
    rng.shuffle(db)
    queries = db[[0, 5, 17]]
    rankings, distances = reference_rankings(queries, db, 16)
    for k in (1, 10, 300):
        assert_topk_matches(search_topk(queries, db, k, "faiss"), rankings, distances, k)


def test_empty_database_and_argument_checks():
    queries = np.zeros((3, 4), dtype=np.uint8)
    empty = np.zeros((0, 4), dtype=np.uint8)
    result = search_topk(queries, empty, 5, "numpy")
    assert result.indices.shape == (3, 0)
    assert all(len(hits.indices) == 0 for hits in radius_search(queries, empty, 3, "numpy"))
    db = np.zeros((10, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        search_topk(queries, db, 0)
    with pytest.raises(ValueError, match="radius"):
        radius_search(queries, db, -1)
    with pytest.raises(ValueError, match="unknown search backend"):
        search_topk(queries, db, 1, "annoy")
    with pytest.raises(ValueError, match="query codes"):
        search_topk(np.zeros((3, 8), dtype=np.uint8), db, 1)
    with pytest.raises(ValueError, match="MIH needs"):
        search_topk(queries, db, 1, "mih", mih_substrings=33)


def test_auto_prefers_mih_only_for_large_archives_of_short_codes():
    assert resolve_backend("auto", 10_000_000, 64) == "mih"
    assert resolve_backend("auto", 10_000_000, 256) in ("faiss", "numpy")
    assert resolve_backend("auto", 1_000, 64) == ("faiss" if faiss_available() else "numpy")


def test_without_faiss_auto_uses_numpy_and_faiss_is_a_clear_error(monkeypatch):
    import fgmd.retrieval.search as search_module

    monkeypatch.setattr(search_module, "faiss_available", lambda: False)
    assert resolve_backend("auto", 1_000, 64) == "numpy"
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        resolve_backend("faiss", 1_000, 64)


def test_mih_routes_far_queries_to_the_scan_with_identical_results():
    """Random 64-bit codes: the k-th code is far, MIH switches to the scan; after a window of
    such queries it routes them there directly, and the answers stay exact."""
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (30_000, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (80, 8), dtype=np.uint8)
    mih = MultiIndexHashing(db, 64)
    result = mih.topk(queries, 50)
    expected = NumpyBruteForce(db, 64).topk(queries, 50)
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_array_equal(result.distances, expected.distances)
    assert mih.routed > 40  # most queries after the first window went straight to the scan
    # close queries (database items) are probed again: the statistic follows the queries
    routed = mih.routed
    close = mih.topk(db[:64], 1)  # found at step 0
    np.testing.assert_array_equal(close.indices[:, 0], np.arange(64))
    assert mih.routed - routed <= ROUTE_PROBE_EVERY


def test_mih_does_not_route_clustered_queries_on_a_large_archive():
    """Trained-hashing-like codes on an archive large enough for MIH to pay: no query is routed."""
    rng = np.random.default_rng(4)
    centres = rng.integers(0, 2, (50, 32)).astype(bool)
    db = clustered_codes(rng, 300_000, 32, centres, flip=0.05)
    queries = clustered_codes(rng, 60, 32, centres, flip=0.05)
    mih = MultiIndexHashing(db, 32)
    result, expected = mih.topk(queries, 10), NumpyBruteForce(db, 32).topk(queries, 10)
    np.testing.assert_array_equal(result.indices, expected.indices)
    assert mih.routed == 0


def test_recall_at_k_counts_ties_by_distance():
    from fgmd.retrieval.backends.faiss_ivf import recall_at_k

    exact = np.array([[0, 1, 2, 2], [3, 3, 3, 3]])
    found = np.array([[0, 2, 2, 2], [3, 3, 4, 5]])  # 3 of 4: one item at 1 missed; 2 of 4 at distance 3
    np.testing.assert_allclose(recall_at_k(found, exact), [0.75, 0.5])
    np.testing.assert_allclose(recall_at_k(exact, exact), [1.0, 1.0])


@needs_faiss
def test_ivf_probing_every_cluster_equals_the_scan_up_to_tie_order(data):
    """The approximate backend with nprobe = nlist scans everything: the numpy scan's distances,
    every returned index at its reported distance (ties normalised: the order among equal
    distances is by position within what faiss returned)."""
    from fgmd.retrieval.backends import FaissIVF

    bits, queries, db, rankings, distances = data
    ivf = FaissIVF(db, bits, nlist=16, nprobe=16)
    for k in (1, 10, 100):
        result = ivf.topk(queries, k)
        expected = NumpyBruteForce(db, bits).topk(queries, k)
        np.testing.assert_array_equal(result.distances, expected.distances)
        for row in range(len(queries)):
            np.testing.assert_array_equal(distances[row, result.indices[row]], result.distances[row])
            assert len(set(result.indices[row].tolist())) == k
    for hits, reference in zip(ivf.radius(queries, 5), radius_search(queries, db, 5, "numpy")):
        assert sorted(hits.indices.tolist()) == sorted(reference.indices.tolist())


@needs_faiss
def test_ivf_calibrates_nprobe_to_the_recall_target():
    from fgmd.retrieval.backends import FaissIVF
    from fgmd.retrieval.backends.faiss_ivf import recall_at_k

    rng = np.random.default_rng(5)
    centres = rng.integers(0, 2, (40, 64)).astype(bool)
    db = clustered_codes(rng, 20_000, 64, centres, flip=0.08)
    queries = clustered_codes(rng, 60, 64, centres, flip=0.08)
    ivf = FaissIVF(db, 64, recall_target=0.9, calibration_k=50)
    assert ivf.calibrated_recall >= 0.9 and 1 <= ivf.nprobe < ivf.nlist
    recall = recall_at_k(ivf.topk(queries, 50).distances, NumpyBruteForce(db, 64).topk(queries, 50).distances)
    assert recall.mean() >= 0.8  # fresh queries of the same distribution
    weaker = FaissIVF(db, 64, nprobe=1)
    assert (
        recall_at_k(weaker.topk(queries, 50).distances, NumpyBruteForce(db, 64).topk(queries, 50).distances).mean()
        < recall.mean()
    )
    with pytest.raises(ValueError, match="recall target"):
        FaissIVF(db, 64, recall_target=1.5)


def test_approximate_backend_is_never_chosen_by_auto():
    for n in (10, 10**6, 10**8):
        assert resolve_backend("auto", n, 64) != "ivf"
