"""Retrieval evaluation: Hamming ranking and hashing metrics (see ``metrics``)."""

from fgmd.evaluation.metrics import (
    hamming_ranking,
    pr_curve_by_radius,
    precision_recall_at_ranks,
    relevance,
    retrieval_metrics,
)

__all__ = [
    "hamming_ranking",
    "pr_curve_by_radius",
    "precision_recall_at_ranks",
    "relevance",
    "retrieval_metrics",
]
