import torch

from fgmd.codes import hamming_pm1
from fgmd.training.mining import hardest_candidates, mine_triplets


def codes(rows):
    return torch.tensor(rows, dtype=torch.float32)


def one_hot(labels, num_classes):
    return torch.nn.functional.one_hot(torch.tensor(labels), num_classes).float()


def test_hamming_pm1_counts_differing_bits():
    a = codes([[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, 1, 1]])
    assert hamming_pm1(a, a).tolist() == [[0, 4, 1], [4, 0, 3], [1, 3, 0]]


def test_hardest_positives_and_negatives_on_a_toy_set():
    # anchors (modality A) are all [1,1,1,1]; candidates (modality B) at known distances
    anchor = codes([[1, 1, 1, 1]] * 6)
    other = codes(
        [
            [1, 1, 1, 1],  # 0 class 0, d=0
            [-1, 1, 1, 1],  # 1 class 0, d=1
            [-1, -1, -1, 1],  # 2 class 0, d=3
            [-1, -1, 1, 1],  # 3 class 1, d=2
            [1, 1, 1, -1],  # 4 class 1, d=1
            [-1, -1, -1, -1],  # 5 class 1, d=4
        ]
    )
    labels = one_hot([0, 0, 0, 1, 1, 1], 2)
    pos, n_pos, neg, n_neg = hardest_candidates(anchor, other, labels, k=2)
    # anchor 0 (class 0): farthest positives 2 (d=3), 1 (d=1); nearest negatives 4 (d=1), 3 (d=2)
    assert pos[0].tolist() == [2, 1] and neg[0].tolist() == [4, 3]
    # anchor 3 (class 1): farthest positives 5 (d=4), 3 (d=2); nearest negatives 0 (d=0), 1 (d=1)
    assert pos[3].tolist() == [5, 3] and neg[3].tolist() == [0, 1]
    assert n_pos.tolist() == [2] * 6 and n_neg.tolist() == [2] * 6


def test_ties_break_by_lower_index():
    anchor = codes([[1, 1]] * 4)
    other = codes([[1, 1]] * 4)  # every distance is 0
    labels = one_hot([0, 0, 1, 1], 2)
    pos, _, neg, _ = hardest_candidates(anchor, other, labels, k=2)
    assert pos[0].tolist() == [0, 1] and neg[0].tolist() == [2, 3]
    assert pos[2].tolist() == [2, 3] and neg[2].tolist() == [0, 1]


def test_small_classes_offer_all_their_members_only():
    g = torch.Generator().manual_seed(0)
    labels = one_hot([0] + [1] * 30, 2)  # class 0 has one member
    a = torch.randn(31, 16, generator=g).sign()
    b = torch.randn(31, 16, generator=g).sign()
    pos, n_pos, neg, n_neg = hardest_candidates(a, b, labels, k=20)
    assert n_pos[0] == 1 and pos[0, 0] == 0
    assert n_neg[0] == 20 and n_pos[1] == 20
    for _ in range(5):
        p, n = mine_triplets(a, b, labels, k=20, generator=g)
        assert p[0] == 0  # the only positive of the lone class-0 item is its own partner
        assert (labels[p] * labels).sum(1).min() >= 1  # positives share a label
        assert (labels[n] * labels).sum(1).max() == 0  # negatives share none


def test_multi_label_relevance_and_chunking_agree():
    g = torch.Generator().manual_seed(1)
    first = torch.randint(0, 4, (50,), generator=g)
    second = torch.randint(0, 4, (50,), generator=g)
    labels = torch.zeros(50, 4)
    labels[torch.arange(50), first] = 1
    labels[torch.arange(25), second[:25]] = 1  # half the items carry two labels (at most 2 of 4)
    a = torch.randn(50, 8, generator=g).sign()
    b = torch.randn(50, 8, generator=g).sign()
    full = hardest_candidates(a, b, labels, k=5, chunk_size=1024)
    chunked = hardest_candidates(a, b, labels, k=5, chunk_size=7)
    for x, y in zip(full, chunked):
        assert torch.equal(x, y)


def test_mining_is_reproducible_from_the_generator():
    labels = one_hot([0, 1, 2] * 10, 3)
    a = torch.randn(30, 8).sign()
    b = torch.randn(30, 8).sign()
    first = mine_triplets(a, b, labels, 4, torch.Generator().manual_seed(3))
    second = mine_triplets(a, b, labels, 4, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(first, second))
