"""Tests for fgmd.evaluation.metrics.

The fast, vectorised metrics are checked against a slow, obvious per-query reference written
here from the definitions (Python loops, ``sorted`` with key (distance, index)), against
hand-computed cases, and against a numpy re-implementation of DeepHash-pytorch's CalcTopMap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fgmd.codes import hamming_distance, sign_codes
from fgmd.evaluation import (
    hamming_ranking,
    pr_curve_by_radius,
    precision_recall_at_ranks,
    relevance,
    retrieval_metrics,
)

# --------------------------------------------------------------------------------------
# Slow reference, one query at a time.
# --------------------------------------------------------------------------------------


def ref_bit(x: float) -> int:
    return 1 if x >= 0 else -1


def ref_hamming(a: list[float], b: list[float]) -> int:
    return sum(1 for x, y in zip(a, b) if ref_bit(x) != ref_bit(y))


def ref_relevant(a: list[float], b: list[float]) -> bool:
    return any(x > 0 and y > 0 for x, y in zip(a, b))


def ref_ranked_relevance(q_code, q_label, db_codes, db_labels) -> list[bool]:
    dist = [ref_hamming(q_code, c) for c in db_codes]
    order = sorted(range(len(db_codes)), key=lambda i: (dist[i], i))
    return [ref_relevant(q_label, db_labels[i]) for i in order]


def ref_ap_sum(rels: list[bool]) -> tuple[float, int]:
    """Sum of precision@j over relevant positions j, and the number of relevant items."""
    found, total = 0, 0.0
    for j, rel in enumerate(rels, start=1):
        if rel:
            found += 1
            total += found / j
    return total, found


def ref_metrics(qc, dc, ql, dl, map_at_k, map_at_r, precision_at, recall_at) -> dict:
    qc, dc, ql, dl = qc.tolist(), dc.tolist(), ql.tolist(), dl.tolist()
    n_db = len(dc)
    sums: dict[str, float] = {}

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + value

    for i in range(len(qc)):
        rels = ref_ranked_relevance(qc[i], ql[i], dc, dl)
        total, n_rel = ref_ap_sum(rels)
        add("map", total / n_rel if n_rel else 0.0)
        for k in map_at_k:
            top_total, top_found = ref_ap_sum(rels[:k])
            add(f"map@{k}", top_total / top_found if top_found else 0.0)
        if map_at_r:
            add("map@R", ref_ap_sum(rels[:map_at_r])[0] / map_at_r)
        for k in precision_at:
            add(f"precision@{k}", sum(rels[:k]) / min(k, n_db))
        for k in recall_at:
            add(f"recall@{k}", sum(rels[:k]) / n_rel if n_rel else 0.0)
    return {key: value / len(qc) for key, value in sums.items()}


def ref_pr_by_radius(qc, dc, ql, dl):
    qc, dc, ql, dl = qc.tolist(), dc.tolist(), ql.tolist(), dl.tolist()
    bits = len(qc[0])
    precision, recall = [], []
    for radius in range(bits + 1):
        precisions, recalls = [], []
        for i in range(len(qc)):
            retrieved = [j for j in range(len(dc)) if ref_hamming(qc[i], dc[j]) <= radius]
            rel_retrieved = sum(1 for j in retrieved if ref_relevant(ql[i], dl[j]))
            n_rel = sum(1 for j in range(len(dc)) if ref_relevant(ql[i], dl[j]))
            if retrieved:
                precisions.append(rel_retrieved / len(retrieved))
            if n_rel:
                recalls.append(rel_retrieved / n_rel)
        precision.append(sum(precisions) / len(precisions) if precisions else math.nan)
        recall.append(sum(recalls) / len(recalls) if recalls else math.nan)
    return np.arange(bits + 1), np.array(precision), np.array(recall)


def calc_top_map_numpy(q_codes, db_codes, q_labels, db_labels, topk):
    """DeepHash-pytorch's CalcTopMap convention, in numpy, with a STABLE argsort."""
    q_b = np.where(q_codes >= 0, 1.0, -1.0)
    db_b = np.where(db_codes >= 0, 1.0, -1.0)
    total = 0.0
    for i in range(q_b.shape[0]):
        gnd = (q_labels[i] @ db_labels.T > 0).astype(np.float32)
        hamm = 0.5 * (q_b.shape[1] - q_b[i] @ db_b.T)
        tgnd = gnd[np.argsort(hamm, kind="stable")][:topk]
        tsum = int(tgnd.sum())
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.flatnonzero(tgnd == 1) + 1.0
        total += np.mean(count / tindex)
    return total / q_b.shape[0]


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def random_case(seed, num_q, num_db, bits, classes, multi_label=False):
    g = torch.Generator().manual_seed(seed)
    qc = torch.tanh(torch.randn(num_q, bits, generator=g))
    dc = torch.tanh(torch.randn(num_db, bits, generator=g))
    if multi_label:  # some rows all-zero: queries without relevant items, items never relevant
        ql = (torch.rand(num_q, classes, generator=g) < 0.25).float()
        dl = (torch.rand(num_db, classes, generator=g) < 0.25).float()
        assert (ql.sum(1) == 0).any()
    else:
        eye = torch.eye(classes)
        ql = eye[torch.randint(0, classes, (num_q,), generator=g)]
        dl = eye[torch.randint(0, classes, (num_db,), generator=g)]
    return qc, dc, ql, dl


CASES = {
    "single_label_k8": dict(seed=0, num_q=40, num_db=300, bits=8, classes=5),
    "multi_label_k8": dict(seed=1, num_q=40, num_db=300, bits=8, classes=5, multi_label=True),
    "single_label_k64": dict(seed=2, num_q=20, num_db=200, bits=64, classes=3),
}

SETTINGS = dict(
    map_at_k=(1, 7, 50, 100, 1000),  # 1000 > N: clamped
    map_at_r=37,
    precision_at=(1, 10, 50, 1000),
    recall_at=(5, 100, 1000),
)


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    return random_case(**CASES[request.param])


def assert_metrics_close(got: dict, want: dict, tol: float = 1e-6):
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=tol), key


# --------------------------------------------------------------------------------------
# Fast == slow reference on random data with many ties
# --------------------------------------------------------------------------------------


def test_retrieval_metrics_match_reference(case):
    qc, dc, ql, dl = case
    got = retrieval_metrics(qc, dc, ql, dl, **SETTINGS)
    want = ref_metrics(qc, dc, ql, dl, **SETTINGS)
    tie_keys = {
        "map_tie",
        *(f"map_tie@{k}" for k in SETTINGS["map_at_k"]),
        *(f"precision_tie@{k}" for k in SETTINGS["precision_at"]),
    }
    assert set(got) == set(want) | tie_keys | {"R", "num_queries", "num_database"}
    assert_metrics_close(got, want)
    assert got["R"] == 37 and got["num_queries"] == len(qc) and got["num_database"] == len(dc)
    assert all(type(v) is float for k, v in got.items() if k not in ("R", "num_queries", "num_database"))


def test_map_at_r_larger_than_database_divides_by_r(case):
    qc, dc, ql, dl = case
    r = 2 * len(dc)
    got = retrieval_metrics(qc, dc, ql, dl, map_at_k=(), map_at_r=r, precision_at=())
    want = ref_metrics(qc, dc, ql, dl, (), r, (), ())
    assert got["map@R"] == pytest.approx(want["map@R"], abs=1e-6)


def test_chunked_equals_unchunked(case):
    qc, dc, ql, dl = case
    full = retrieval_metrics(qc, dc, ql, dl, **SETTINGS)
    for chunk_size in (1, 7):
        chunked = retrieval_metrics(qc, dc, ql, dl, chunk_size=chunk_size, **SETTINGS)
        assert_metrics_close(chunked, full, tol=1e-12)
        radius_c, precision_c, recall_c = pr_curve_by_radius(qc, dc, ql, dl, chunk_size=chunk_size)
        radius, precision, recall = pr_curve_by_radius(qc, dc, ql, dl)
        np.testing.assert_allclose(precision_c, precision, atol=1e-12)
        np.testing.assert_allclose(recall_c, recall, atol=1e-12)


def test_pr_curve_by_radius_matches_reference(case):
    qc, dc, ql, dl = case
    if qc.shape[1] == 64:  # the reference is O(K·Q·N·K); keep it small
        qc, dc, ql, dl = qc[:5], dc[:60], ql[:5], dl[:60]
    radius, precision, recall = pr_curve_by_radius(qc, dc, ql, dl)
    want_radius, want_precision, want_recall = ref_pr_by_radius(qc, dc, ql, dl)
    np.testing.assert_array_equal(radius, want_radius)
    np.testing.assert_allclose(precision, want_precision, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(recall, want_recall, atol=1e-6, equal_nan=True)


def test_precision_recall_at_ranks_matches_reference(case):
    qc, dc, ql, dl = case
    ranks = [1, 2, 5, 10, 50, 100, 150, 1000]
    got_ranks, precision, recall = precision_recall_at_ranks(qc, dc, ql, dl, ranks, chunk_size=3)
    want = ref_metrics(qc, dc, ql, dl, (), None, ranks, ranks)
    np.testing.assert_array_equal(got_ranks, ranks)
    np.testing.assert_allclose(precision, [want[f"precision@{k}"] for k in ranks], atol=1e-6)
    np.testing.assert_allclose(recall, [want[f"recall@{k}"] for k in ranks], atol=1e-6)


def test_map_at_k_matches_deephash_calc_top_map(case):
    qc, dc, ql, dl = case
    for k in (1, 10, 100, len(dc)):
        want = calc_top_map_numpy(qc.numpy(), dc.numpy(), ql.numpy(), dl.numpy(), k)
        assert retrieval_metrics(qc, dc, ql, dl, map_at_k=(k,))[f"map@{k}"] == pytest.approx(want, abs=1e-6)
    # Over the whole database, CalcTopMap is the full-ranking mAP.
    full = calc_top_map_numpy(qc.numpy(), dc.numpy(), ql.numpy(), dl.numpy(), len(dc))
    assert retrieval_metrics(qc, dc, ql, dl)["map"] == pytest.approx(full, abs=1e-6)


# --------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------

# One query q = (+1, +1, +1, +1), K = 4, a database of 5:
#   item  code                   distance  relevant (label 0)
#   0     (-1, -1, +1, +1)        2         yes
#   1     (-1, +1, +1, +1)        1         no
#   2     (+1, -1, +1, +1)        1         yes
#   3     ( 0, .5,  1,  0) -> +1  0         no
#   4     (-1, -1, -1, +1)        3         yes
# Ranking (distance, then index): 3, 1, 2, 0, 4 -> relevance 0 0 1 1 1, hits 0 0 1 2 3.
# Precision at the relevant positions: 1/3, 2/4, 3/5.
#   mAP        = (1/3 + 1/2 + 3/5) / 3 = 43/90
#   map@3      = (1/3) / 1 (one relevant in the top 3) = 1/3
#   map@4      = (1/3 + 1/2) / 2 = 5/12
#   map@R, R=3 = (1/3) / 3 = 1/9;  R=4: (1/3 + 1/2) / 4 = 5/24
#   P@1 = 0, P@3 = 1/3, P@4 = 2/4, P@5 = 3/5;  R@3 = 1/3, R@4 = 2/3, R@5 = 1
#   by radius r: retrieved {3}, {3,1,2}, +{0}, +{4}, same
#     precision = 0, 1/3, 2/4, 3/5, 3/5;  recall = 0, 1/3, 2/3, 1, 1
HAND_Q = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
HAND_DB = torch.tensor(
    [
        [-1.0, -1.0, 1.0, 1.0],
        [-1.0, 1.0, 1.0, 1.0],
        [1.0, -1.0, 1.0, 1.0],
        [0.0, 0.5, 1.0, 0.0],
        [-1.0, -1.0, -1.0, 1.0],
    ]
)
HAND_QL = torch.tensor([[1.0, 0.0]])
HAND_DL = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])


def test_hand_computed_distances_and_ranking():
    assert hamming_distance(HAND_Q, HAND_DB).tolist() == [[2, 1, 1, 0, 3]]
    assert hamming_distance(HAND_Q, HAND_DB).dtype == torch.int32
    assert hamming_ranking(HAND_Q, HAND_DB).tolist() == [[3, 1, 2, 0, 4]]
    assert hamming_ranking(HAND_Q, HAND_DB).dtype == torch.long
    assert relevance(HAND_QL, HAND_DL).tolist() == [[True, False, True, False, True]]


def test_hand_computed_metrics():
    got = retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL, map_at_k=(3, 4), map_at_r=3, precision_at=(1, 3, 4, 5))
    want = {
        "map": 43 / 90,
        "map@3": 1 / 3,
        "map@4": 5 / 12,
        "map@R": 1 / 9,
        "R": 3,
        "precision@1": 0.0,
        "precision@3": 1 / 3,
        "precision@4": 2 / 4,
        "precision@5": 3 / 5,
        "recall@1": 0.0,
        "recall@3": 1 / 3,
        "recall@4": 2 / 3,
        "recall@5": 1.0,
        "num_queries": 1,
        "num_database": 5,
    }
    assert {k for k in got if "_tie" not in k} == want.keys()
    assert_metrics_close(got, want, tol=1e-12)
    r4 = retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL, map_at_r=4)
    assert r4["map@R"] == pytest.approx(5 / 24, abs=1e-12) and r4["R"] == 4


def test_hand_computed_pr_curves():
    radius, precision, recall = pr_curve_by_radius(HAND_Q, HAND_DB, HAND_QL, HAND_DL)
    assert radius.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(precision, [0, 1 / 3, 2 / 4, 3 / 5, 3 / 5], atol=1e-12)
    np.testing.assert_allclose(recall, [0, 1 / 3, 2 / 3, 1, 1], atol=1e-12)
    ranks, precision, recall = precision_recall_at_ranks(HAND_Q, HAND_DB, HAND_QL, HAND_DL, [1, 3, 5, 8])
    assert ranks.tolist() == [1, 3, 5, 8]
    np.testing.assert_allclose(precision, [0, 1 / 3, 3 / 5, 3 / 5], atol=1e-12)  # k = 8 clamped to 5
    np.testing.assert_allclose(recall, [0, 1 / 3, 1, 1], atol=1e-12)


def test_tie_order_by_database_index_changes_ap():
    # Swap items 1 and 2 (both at distance 1): now the relevant one comes first in the tie.
    # Ranking 3, 1(rel), 2, 0, 4 -> relevance 0 1 0 1 1, precisions 1/2, 2/4, 3/5:
    #   mAP = (1/2 + 1/2 + 3/5) / 3 = 8/15 (was 43/90); map@2 = 1/2 (was 0).
    swapped_db = HAND_DB[[0, 2, 1, 3, 4]]
    swapped_dl = HAND_DL[[0, 2, 1, 3, 4]]
    got = retrieval_metrics(HAND_Q, swapped_db, HAND_QL, swapped_dl, map_at_k=(2,))
    assert got["map"] == pytest.approx(8 / 15, abs=1e-12)
    assert got["map@2"] == pytest.approx(1 / 2, abs=1e-12)
    original = retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL, map_at_k=(2,))
    assert original["map"] == pytest.approx(43 / 90, abs=1e-12)
    assert original["map@2"] == 0.0


def test_query_without_relevant_items_counts_as_zero():
    # Query 0 is the hand case; query 1 (same code) has a label no database item carries.
    qc = torch.cat([HAND_Q, HAND_Q])
    ql = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    dl = torch.cat([HAND_DL, torch.zeros(5, 1)], dim=1)
    got = retrieval_metrics(qc, HAND_DB, ql, dl, map_at_k=(3,), map_at_r=3, precision_at=(3, 5))
    assert got["map"] == pytest.approx(43 / 90 / 2, abs=1e-12)
    assert got["map@3"] == pytest.approx(1 / 3 / 2, abs=1e-12)
    assert got["map@R"] == pytest.approx(1 / 9 / 2, abs=1e-12)
    assert got["precision@5"] == pytest.approx(3 / 5 / 2, abs=1e-12)
    assert got["recall@3"] == pytest.approx(1 / 3 / 2, abs=1e-12)
    # PR by radius: both queries retrieve the same items, so precision is halved;
    # recall is averaged over query 0 only.
    _, precision, recall = pr_curve_by_radius(qc, HAND_DB, ql, dl)
    np.testing.assert_allclose(precision, np.array([0, 1 / 3, 2 / 4, 3 / 5, 3 / 5]) / 2, atol=1e-12)
    np.testing.assert_allclose(recall, [0, 1 / 3, 2 / 3, 1, 1], atol=1e-12)


def test_pr_curve_radius_with_no_retrieval_is_nan():
    # The query is at distance >= 1 from every item: nothing is retrieved at radius 0.
    _, precision, recall = pr_curve_by_radius(-HAND_DB[3:4], HAND_DB[:3], HAND_QL, HAND_DL[:3])
    assert math.isnan(precision[0]) and recall[0] == 0.0
    assert not np.isnan(precision[1:]).any()


# --------------------------------------------------------------------------------------
# Binarisation and code formats
# --------------------------------------------------------------------------------------


def test_sign_rule_with_zero_to_plus_one():
    codes = torch.tensor([[-0.3, 0.0, 2.0, -0.0]])
    assert sign_codes(codes).tolist() == [[-1, 1, 1, 1]]
    assert sign_codes(codes).dtype == torch.int8
    assert sign_codes(codes, torch.float32).dtype == torch.float32
    with pytest.raises(TypeError):
        sign_codes(torch.tensor([[True, False]]))
    with pytest.raises(ValueError):
        sign_codes(torch.tensor([[0.5, math.nan]]))


def test_float_tanh_codes_equal_sign_codes_and_zero_is_plus_one():
    qc, dc, ql, dl = random_case(seed=3, num_q=15, num_db=120, bits=16, classes=4)
    qc[0, :4] = 0.0  # exact zeros
    dc[:10, 3] = 0.0
    from_float = retrieval_metrics(qc, dc, ql, dl, map_at_r=20)
    from_sign = retrieval_metrics(sign_codes(qc), sign_codes(dc), ql, dl, map_at_r=20)
    zeros_as_plus = retrieval_metrics(torch.where(qc == 0, 1.0, qc), torch.where(dc == 0, 1.0, dc), ql, dl, map_at_r=20)
    assert from_float == from_sign == zeros_as_plus
    curve_float = pr_curve_by_radius(qc, dc, ql, dl)
    curve_sign = pr_curve_by_radius(sign_codes(qc), sign_codes(dc), ql, dl)
    for a, b in zip(curve_float, curve_sign):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bits", [64, 4096])
def test_hamming_distance_is_exact(bits):
    g = torch.Generator().manual_seed(bits)
    q = torch.randn(7, bits, generator=g)
    d = torch.randn(11, bits, generator=g)
    want = ((q >= 0)[:, None, :] != (d >= 0)[None, :, :]).sum(-1)
    assert torch.equal(hamming_distance(q, d), want.to(torch.int32))


def test_relevance_multi_label():
    ql = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    dl = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert relevance(ql, dl).tolist() == [[True, False, True], [False, False, False]]


# --------------------------------------------------------------------------------------
# Input checks and devices
# --------------------------------------------------------------------------------------


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        retrieval_metrics(HAND_Q[:, :3], HAND_DB, HAND_QL, HAND_DL)  # K mismatch
    with pytest.raises(ValueError):
        retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL[:4])  # label rows
    with pytest.raises(ValueError):
        retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL, map_at_k=(0,))
    with pytest.raises(ValueError):
        retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL, chunk_size=0)
    with pytest.raises(ValueError):
        retrieval_metrics(HAND_Q[:0], HAND_DB, HAND_QL[:0], HAND_DL)


def test_map_at_r_zero_or_none_is_left_out():
    for r in (None, 0):
        got = retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL, map_at_r=r)
        assert "map@R" not in got and "R" not in got
    assert set(retrieval_metrics(HAND_Q, HAND_DB, HAND_QL, HAND_DL)) == {
        "map", "map@100", "precision@10", "precision@50", "precision@100",
        "recall@10", "recall@50", "recall@100", "num_queries", "num_database",
        "map_tie", "map_tie@100", "precision_tie@10", "precision_tie@50", "precision_tie@100",
    }  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    qc, dc, ql, dl = random_case(**CASES["multi_label_k8"])
    cpu = retrieval_metrics(qc, dc, ql, dl, **SETTINGS)
    gpu = retrieval_metrics(qc.cuda(), dc.cuda(), ql.cuda(), dl.cuda(), chunk_size=7, **SETTINGS)
    assert_metrics_close(gpu, cpu, tol=1e-9)
    curve_gpu = pr_curve_by_radius(qc.cuda(), dc.cuda(), ql.cuda(), dl.cuda(), chunk_size=7)
    for a, b in zip(pr_curve_by_radius(qc, dc, ql, dl), curve_gpu):
        np.testing.assert_allclose(a, b, atol=1e-9, equal_nan=True)


def test_average_precision_per_query_averages_to_map():
    from fgmd.evaluation.metrics import average_precision_per_query

    gen = torch.Generator().manual_seed(3)
    queries, db = torch.randn(13, 16, generator=gen), torch.randn(40, 16, generator=gen)
    query_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (13,), generator=gen), 4)
    db_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (40,), generator=gen), 4)
    db_labels[0] = 0  # an unlabelled item
    ap = average_precision_per_query(queries, db, query_labels, db_labels, chunk_size=5)
    assert ap.shape == (13,) and ap.dtype == torch.float64
    assert float(ap.mean()) == pytest.approx(retrieval_metrics(queries, db, query_labels, db_labels)["map"], abs=1e-12)
    # one query by hand: precision at each relevant rank of the stable Hamming ranking
    distances = ((torch.sign(queries[2]) != torch.where(db >= 0, 1.0, -1.0)).sum(1)).tolist()
    order = sorted(range(40), key=lambda i: (distances[i], i))
    relevant = [bool((query_labels[2] * db_labels[i]).sum()) for i in order]
    found, total = 0, 0.0
    for rank, hit in enumerate(relevant, start=1):
        if hit:
            found += 1
            total += found / rank
    assert float(ap[2]) == pytest.approx(total / max(found, 1), abs=1e-12)
    tie = average_precision_per_query(queries, db, query_labels, db_labels, chunk_size=5, tie_aware=True)
    assert float(tie.mean()) == pytest.approx(
        retrieval_metrics(queries, db, query_labels, db_labels)["map_tie"], abs=1e-12
    )


# --------------------------------------------------------------------------------------
# Tie-aware metrics: expectations over all orders of tied items
# --------------------------------------------------------------------------------------


def ref_tie_aware(q_code, q_label, db_codes, db_labels, map_at_k, precision_at) -> dict:
    """Brute force: every order of the items within each distance group, the index-broken
    measures of each order, averaged (all orders are equally likely)."""
    import itertools

    dist = [ref_hamming(q_code, c) for c in db_codes]
    groups = [[i for i in range(len(dist)) if dist[i] == d] for d in sorted(set(dist))]
    sums: dict[str, float] = {}
    orders = 0
    for parts in itertools.product(*(itertools.permutations(g) for g in groups)):
        rels = [ref_relevant(q_label, db_labels[i]) for part in parts for i in part]
        orders += 1
        total, n_rel = ref_ap_sum(rels)
        values = {"map_tie": total / n_rel if n_rel else 0.0}
        for k in map_at_k:
            top_total, top_found = ref_ap_sum(rels[:k])
            values[f"map_tie@{k}"] = top_total / top_found if top_found else 0.0
        for k in precision_at:
            values[f"precision_tie@{k}"] = sum(rels[:k]) / min(k, len(rels))
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
    return {key: value / orders for key, value in sums.items()}


@pytest.mark.parametrize("seed", range(8))
def test_tie_aware_metrics_equal_the_average_over_all_orders_of_tied_items(seed):
    # 7 items, 3 bits: groups of 1-5 tied items, at most a few thousand orders per query.
    g = torch.Generator().manual_seed(seed)
    qc, dc = torch.randn(4, 3, generator=g), torch.randn(7, 3, generator=g)
    ql = (torch.rand(4, 3, generator=g) < 0.4).float()  # multi-label, some queries without relevant items
    dl = (torch.rand(7, 3, generator=g) < 0.4).float()
    if seed == 0:
        dc[:] = 1.0  # one group of all 7 items
    ks, ps = (1, 2, 3, 5, 7, 10), (1, 3, 4, 9)
    for i in range(len(qc)):
        got = retrieval_metrics(qc[i : i + 1], dc, ql[i : i + 1], dl, map_at_k=ks, precision_at=ps)
        want = ref_tie_aware(qc[i].tolist(), ql[i].tolist(), dc.tolist(), dl.tolist(), ks, ps)
        assert_metrics_close(got, want, tol=1e-10)


def test_constant_codes_on_a_class_sorted_database_score_the_random_ranking_ap():
    """Done-means of issue 11: tie-aware AP = (R-1)/(N-1) + H_N (N-R) / (N (N-1)), 0.1814 for R = 50
    of N = 300, while breaking ties by index rewards the class-sorted order."""
    n, r = 300, 50
    labels = torch.nn.functional.one_hot(torch.arange(n) // r, n // r).float()  # sorted by class
    codes = torch.ones(n, 32)
    got = retrieval_metrics(codes[::r], codes, labels[::r], labels, map_at_k=(100,), precision_at=(10, 100))
    harmonic = sum(1 / i for i in range(1, n + 1))
    expected = (r - 1) / (n - 1) + harmonic * (n - r) / (n * (n - 1))
    assert expected == pytest.approx(0.1814, abs=5e-5)
    assert got["map_tie"] == pytest.approx(expected, abs=1e-12)
    assert got["precision_tie@10"] == pytest.approx(1 / 6, abs=1e-12)
    assert got["precision_tie@100"] == pytest.approx(1 / 6, abs=1e-12)
    assert abs(got["map"] - expected) > 0.1  # index order: the class-0 query ranks its class first


def test_tie_aware_metrics_do_not_depend_on_the_database_order(case):
    qc, dc, ql, dl = case
    order = torch.randperm(len(dc), generator=torch.Generator().manual_seed(0))
    a = retrieval_metrics(qc, dc, ql, dl, **SETTINGS)
    b = retrieval_metrics(qc, dc[order], ql, dl[order], **SETTINGS)
    assert_metrics_close(
        {k: v for k, v in b.items() if "_tie" in k}, {k: v for k, v in a.items() if "_tie" in k}, tol=1e-9
    )
    chunked = retrieval_metrics(qc, dc, ql, dl, chunk_size=3, **SETTINGS)
    assert_metrics_close(
        {k: v for k, v in chunked.items() if "_tie" in k}, {k: v for k, v in a.items() if "_tie" in k}, tol=1e-12
    )


def test_distinct_distances_make_tie_aware_equal_index_broken():
    # every database item at its own distance: no ties, both treatments agree
    bits = 8
    db = torch.tensor([[1.0] * (bits - d) + [-1.0] * d for d in range(bits + 1)])
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 1, 1, 0, 1, 0]), 2).float()
    got = retrieval_metrics(db[:1], db, labels[:1], labels, map_at_k=(3, 5), precision_at=(2, 4))
    for key in ("map", "map@3", "map@5", "precision@2", "precision@4"):
        tie = key.replace("map", "map_tie", 1) if key.startswith("map") else key.replace("precision", "precision_tie")
        assert got[tie] == pytest.approx(got[key], abs=1e-12), key


def test_integer_class_indices_score_as_their_one_hot_labels():
    generator = torch.Generator().manual_seed(3)
    qc, dc = torch.randn(12, 16, generator=generator), torch.randn(40, 16, generator=generator)
    qi, di = torch.randint(0, 4, (12,), generator=generator), torch.randint(0, 5, (40,), generator=generator)
    as_indices = retrieval_metrics(qc, dc, qi, di)
    as_one_hot = retrieval_metrics(qc, dc, torch.nn.functional.one_hot(qi, 5), torch.nn.functional.one_hot(di, 5))
    assert as_indices == as_one_hot
    assert torch.equal(relevance(qi, di), qi[:, None] == di[None, :])


def test_labels_that_are_neither_multi_hot_nor_class_indices_say_what_is_expected():
    qc, dc = torch.randn(3, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="1-D labels must be integer class indices, got torch.float32"):
        retrieval_metrics(qc, dc, torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="class-index labels must be >= 0"):
        retrieval_metrics(qc, dc, torch.tensor([0, -1, 1]), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"or 1-D class indices \[Q\] and \[N\]\); got \(3,\) and \(4, 2\)"):
        retrieval_metrics(qc, dc, torch.tensor([0, 1, 1]), torch.ones(4, 2))
