"""Per-epoch hard triplet mining from the cached binary codes (docs/DESIGN.md §2).

For every anchor of one modality, the candidates are items of the *other* modality:
negatives are the ``k`` nearest (Hamming) items sharing no label with the anchor,
positives the ``k`` farthest items sharing at least one. One of each is drawn at random.
A class with fewer than ``k`` members offers all of them. Ties are broken by item index
(nearest negative: lower index first; farthest positive: lower index first), so mining
is deterministic given the generator.
"""

from __future__ import annotations

import hashlib

import torch

from fgmd.codes import hamming_pm1

# Anchors per block of the [block, N] distance/key matrices: about 2**24 entries per matrix
# (a few int64 matrices live at once: ~0.5 GB at any N), at most 1024 rows.
_BLOCK_ENTRIES = 2**24


def hardest_candidates(
    anchor_codes: torch.Tensor,
    other_codes: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` hardest positives and negatives of every anchor.

    Args:
        anchor_codes: ``[N, K]`` ±1 codes of the anchors (modality A).
        other_codes: ``[N, K]`` ±1 codes of the candidates (modality B), same item order.
        labels: ``[N, L]`` multi-hot labels shared by both modalities.
        k: candidates kept per anchor.
        chunk_size: anchors processed at once (default: sized from ``N`` so that the
            ``[chunk, N]`` work matrices hold about 2**24 entries; the result does not depend on it).

    Returns:
        ``positives [N, k]`` (farthest matching first), ``num_positives [N]`` (valid
        columns, ``min(k, matching items)``), ``negatives [N, k]`` (nearest non-matching
        first), ``num_negatives [N]``.
    """
    n = anchor_codes.shape[0]
    k_eff = min(k, n)
    chunk_size = chunk_size or max(1, min(1024, _BLOCK_ENTRIES // max(n, 1)))
    index = torch.arange(n)
    pos_out, neg_out = torch.empty(n, k_eff, dtype=torch.long), torch.empty(n, k_eff, dtype=torch.long)
    num_pos, num_neg = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)
    label_matrix = labels.float()
    other_codes = other_codes.float()  # once, not per block
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        dist = hamming_pm1(anchor_codes[start:stop].float(), other_codes).long()
        match = (label_matrix[start:stop] @ label_matrix.T) > 0
        # Unique keys: distance first, then index (ascending for negatives, lower index wins for positives).
        neg_key = (dist * n + index).masked_fill(match, torch.iinfo(torch.long).max)
        pos_key = (dist * n + (n - 1 - index)).masked_fill(~match, -1)
        neg_out[start:stop] = neg_key.topk(k_eff, dim=1, largest=False).indices
        pos_out[start:stop] = pos_key.topk(k_eff, dim=1, largest=True).indices
        num_pos[start:stop] = match.sum(1).clamp(max=k_eff)
        num_neg[start:stop] = (~match).sum(1).clamp(max=k_eff)
    if (num_neg == 0).any():
        anchor = int((num_neg == 0).nonzero()[0])
        raise ValueError(f"training item {anchor} shares a label with every other item: no negative to mine")
    if (num_pos == 0).any():
        anchor = int((num_pos == 0).nonzero()[0])
        raise ValueError(f"training item {anchor} has no label: no positive to mine")
    return pos_out, num_pos, neg_out, num_neg


def mine_triplets(
    anchor_codes: torch.Tensor,
    other_codes: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One positive and one negative (indices into ``other_codes``) per anchor, drawn among the k hardest.

    Returns ``(positive [N], negative [N])`` long tensors.
    """
    positives, num_pos, negatives, num_neg = hardest_candidates(anchor_codes, other_codes, labels, k)
    n = anchor_codes.shape[0]
    pick_pos = (torch.rand(n, generator=generator) * num_pos).long().clamp(max=num_pos - 1)
    pick_neg = (torch.rand(n, generator=generator) * num_neg).long().clamp(max=num_neg - 1)
    rows = torch.arange(n)
    return positives[rows, pick_pos], negatives[rows, pick_neg]


def mining_digest(indices: dict[str, torch.Tensor]) -> str:
    """A short fingerprint (SHA-1, 12 hex digits) of mined index tensors, logged per epoch.

    Two runs that mined the same triplets have the same digest; used to check that every
    process of a distributed run mines exactly what a single process would.
    """
    digest = hashlib.sha1()
    for name in sorted(indices):
        digest.update(name.encode())
        digest.update(indices[name].to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]
