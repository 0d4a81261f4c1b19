"""Benchmark metrics as plain functions: recall@k, accuracy, confusion matrix, geodesic error.

All take tensors or arrays and return Python floats (fractions in [0, 1]) or arrays; none of them
trains anything. Embedding similarity is cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..losses import quaternion_angle_deg

__all__ = [
    "accuracy",
    "confusion_matrix",
    "cosine_similarity_matrix",
    "geodesic_error_deg",
    "recall_at_k",
    "retrieval_hits",
]


def _as_tensor(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu()
    if t.dim() != 2:
        raise ValueError(f"{name} must be [N, D], got shape {list(t.shape)}")
    return t.to(torch.float64)


def cosine_similarity_matrix(query: Tensor | np.ndarray, gallery: Tensor | np.ndarray) -> Tensor:
    """``[Q, G]`` cosine similarities (float64) of query rows ``[Q, D]`` and gallery rows ``[G, D]``.

    A zero row has similarity 0 with everything.
    """
    q = _as_tensor(query, "query")
    g = _as_tensor(gallery, "gallery")
    if q.size(1) != g.size(1):
        raise ValueError(f"query and gallery widths differ: {q.size(1)} vs {g.size(1)}")
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return q @ g.T


def _codes(labels: Sequence[object], vocab: dict[object, int]) -> Tensor:
    return torch.tensor([vocab.setdefault(v, len(vocab)) for v in labels], dtype=torch.long)


def retrieval_hits(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    query_labels: Sequence[object],
    gallery_labels: Sequence[object],
    ks: Sequence[int] = (1, 5, 10),
    query_ids: Sequence[object] | None = None,
    gallery_ids: Sequence[object] | None = None,
) -> tuple[dict[int, Tensor], Tensor]:
    """Per-query hits at each ``k``.

    A query hits at ``k`` when one of its ``k`` most similar gallery items (cosine) has the
    query's label (in the benchmark: the same object). Gallery items with the query's own id are
    removed from its ranking (when the query set and the gallery overlap). Ties are broken
    against the query: the rank of the best positive is the number of negatives at least as
    similar, so identical embeddings never count as retrieved.

    Args:
        query: ``[Q, D]`` embeddings; gallery: ``[G, D]``.
        query_labels, gallery_labels: ``Q`` / ``G`` hashable labels (object names).
        ks: the cut-offs.
        query_ids, gallery_ids: ids used to exclude a query from its own gallery (both or neither).
    Returns:
        ``({k: [Q] bool}, valid [Q] bool)``; ``valid`` is False for queries with no positive left
        in the gallery (they cannot hit; :func:`recall_at_k` leaves them out).
    """
    sim = cosine_similarity_matrix(query, gallery)
    n_q, n_g = sim.shape
    if len(query_labels) != n_q or len(gallery_labels) != n_g:
        raise ValueError(
            f"labels: {len(query_labels)} query / {len(gallery_labels)} gallery labels for "
            f"{n_q} / {n_g} embeddings"
        )
    vocab: dict[object, int] = {}
    ql, gl = _codes(query_labels, vocab), _codes(gallery_labels, vocab)
    keep = torch.ones(n_q, n_g, dtype=torch.bool)
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids, or neither")
    if query_ids is not None and gallery_ids is not None:
        ids: dict[object, int] = {}
        qi, gi = _codes(query_ids, ids), _codes(gallery_ids, ids)
        keep = qi[:, None] != gi[None, :]
    pos = (ql[:, None] == gl[None, :]) & keep
    neg = (ql[:, None] != gl[None, :]) & keep
    valid = pos.any(dim=1)
    best_pos = torch.where(pos, sim, torch.full_like(sim, -torch.inf)).amax(dim=1)
    rank = (neg & (sim >= best_pos[:, None])).sum(dim=1)  # negatives ranked at or above it
    hits = {int(k): valid & (rank < int(k)) for k in ks}
    return hits, valid


def recall_at_k(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    query_labels: Sequence[object],
    gallery_labels: Sequence[object],
    k: int = 1,
    query_ids: Sequence[object] | None = None,
    gallery_ids: Sequence[object] | None = None,
) -> float:
    """Recall@k in [0, 1]: the share of queries (with a positive in the gallery) that hit at
    ``k`` (see :func:`retrieval_hits`); NaN when no query has a positive."""
    hits, valid = retrieval_hits(
        query, gallery, query_labels, gallery_labels, (k,), query_ids, gallery_ids
    )
    n = int(valid.sum())
    return float(hits[int(k)].sum()) / n if n else float("nan")


def accuracy(pred: Sequence[object] | np.ndarray, target: Sequence[object] | np.ndarray) -> float:
    """Share of ``pred == target`` in [0, 1]; NaN for empty input."""
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    return float((p == t).mean()) if p.size else float("nan")


def confusion_matrix(
    pred: Sequence[int] | np.ndarray, target: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """``[n_classes, n_classes]`` int64 counts, row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix as _cm

    return _cm(np.asarray(target), np.asarray(pred), labels=np.arange(n_classes)).astype(np.int64)


def geodesic_error_deg(q_pred: Tensor, q_true: Tensor) -> Tensor:
    """``[B]`` angles in degrees in [0, 180] between predicted and true rotations ``[B, 4]``
    (quaternions wxyz; ``q`` and ``-q`` are the same rotation)."""
    return quaternion_angle_deg(torch.as_tensor(q_pred).double(), torch.as_tensor(q_true).double())
