"""Retrieval metrics from the labels of each query's nearest neighbours (query set = gallery set, self excluded).

Protocol: DiVA/DCML ``metrics/`` (algorithms.md §5). Pure numpy: the kNN search is in ``dcml_core/evaluation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_AP_BLOCK = 2**22  # entries of one (rows, width) block in the AP computation


def _as_arrays(knn_labels: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    knn_labels, labels = np.asarray(knn_labels), np.asarray(labels).reshape(-1)
    if knn_labels.ndim != 2 or len(knn_labels) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"knn_labels must be (N, k) with one row per label, got {knn_labels.shape} for {len(labels)} labels"
        )
    return knn_labels, labels


def recall_at_k(knn_labels: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Recall@k per k: fraction of queries with a same-label item among their first k neighbours."""
    knn_labels, labels = _as_arrays(knn_labels, labels)
    for k in ks:
        if not 1 <= k <= knn_labels.shape[1]:
            raise ValueError(f"recall@{k} needs 1 <= k <= {knn_labels.shape[1]} (the neighbours given)")
    hits = knn_labels == labels[:, None]  # (N, K)
    return {int(k): int(hits[:, :k].any(axis=1).sum()) / len(labels) for k in ks}


def _truncated_ap(knn_labels: np.ndarray, labels: np.ndarray, size_offset: int) -> np.ndarray:
    """Per query, (1/w) sum_{i<=w} prec@i rel_i over its first w neighbours, w = class size - size_offset.

    Rows are processed in groups of equal w so that each row sums exactly w terms, in the reference's order.
    Neighbours missing because w exceeds the columns given count as not relevant. Rows with w = 0 get NaN.
    """
    _, class_ids, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    widths = sizes[class_ids] - size_offset  # (N,)
    ap = np.full(len(labels), np.nan)
    for w in np.unique(widths[widths > 0]):
        rows = np.flatnonzero(widths == w)
        cols = min(int(w), knn_labels.shape[1])
        if cols == 0:
            ap[rows] = 0.0
            continue
        ranks = np.arange(1, cols + 1)
        block_rows = max(1, _AP_BLOCK // cols)
        for start in range(0, len(rows), block_rows):
            block = rows[start : start + block_rows]
            rel = knn_labels[block, :cols] == labels[block, None]  # (b, cols)
            ap[block] = np.sum(np.cumsum(rel, axis=1) * rel / ranks, axis=1) / w
    return ap


def map_c(knn_labels: np.ndarray, labels: np.ndarray) -> float:
    """mAP_c of DiVA ``metrics/mAP_c.py``: over the first f retrieved, f = class size including the query.

    AP = (1/f) sum_{i=1..f} prec@i rel_i, averaged over all queries. ``knn_labels`` needs (largest class size)
    columns.
    """
    knn_labels, labels = _as_arrays(knn_labels, labels)
    ap = _truncated_ap(knn_labels, labels, size_offset=0)
    return float(np.mean(ap[np.argsort(labels, kind="stable")]))  # reference order: by class, then index


def map_at_r(knn_labels: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R (Musgrave et al., ECCV 2020): R = class size - 1, AP over the first R retrieved divided by R.

    Queries without another member of their class (R = 0) are skipped; NaN if no query remains.
    """
    knn_labels, labels = _as_arrays(knn_labels, labels)
    ap = _truncated_ap(knn_labels, labels, size_offset=1)
    ap = ap[~np.isnan(ap)]
    return float(np.mean(ap)) if ap.size else float("nan")
