"""Clustering metrics of a partition (the k-means assignment) against the class labels: NMI and pair-counting F1.

Pure numpy: the k-means itself is in ``dcml_core/evaluation/clustering.py``.
"""

from __future__ import annotations

import numpy as np


def _check_pair(cluster_labels: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cluster_labels, labels = np.asarray(cluster_labels).reshape(-1), np.asarray(labels).reshape(-1)
    if cluster_labels.shape != labels.shape or labels.size == 0:
        raise ValueError(
            f"cluster_labels and labels must be non-empty and of equal length, "
            f"got {cluster_labels.size} and {labels.size}"
        )
    return cluster_labels, labels


def _entropy(counts: np.ndarray, total: float) -> float:
    """Shannon entropy (nats) of the distribution given by positive ``counts`` that sum to ``total``."""
    return float(-np.sum(counts / total * (np.log(counts) - np.log(total))))


def nmi(cluster_labels: np.ndarray, labels: np.ndarray) -> float:
    """NMI with arithmetic normalisation: I(clusters; labels) / ((H(clusters) + H(labels)) / 2), natural logs,
    as scikit-learn's ``normalized_mutual_info_score(clusters, labels)`` (the reference's, sklearn >= 0.22; equal to
    it within 1e-12, tests/test_metrics.py), with its conventions: 1.0 when both partitions are a single group,
    0.0 when only one of them is. Computed from the contingency counts here: importing scikit-learn costs every
    trial a second of CPU before its first evaluation (docs/performance.md)."""
    cluster_labels, labels = _check_pair(cluster_labels, labels)
    _, cluster_ids = np.unique(cluster_labels, return_inverse=True)
    _, class_ids = np.unique(labels, return_inverse=True)
    cluster_sizes = np.bincount(cluster_ids).astype(np.float64)
    class_sizes = np.bincount(class_ids).astype(np.float64)
    if cluster_sizes.size == 1 and class_sizes.size == 1:
        return 1.0  # the same (trivial) partition
    if cluster_sizes.size == 1 or class_sizes.size == 1:
        return 0.0  # one side carries no information
    n, n_classes = float(labels.size), class_sizes.size
    cells, joint = np.unique(cluster_ids.astype(np.int64) * n_classes + class_ids, return_counts=True)
    row, col = cluster_sizes[cells // n_classes], class_sizes[cells % n_classes]
    mutual = max(float(np.sum(joint / n * (np.log(joint) + np.log(n) - np.log(row) - np.log(col)))), 0.0)
    if mutual == 0.0:
        return 0.0
    return mutual / ((_entropy(cluster_sizes, n) + _entropy(class_sizes, n)) / 2)


def _pairs(counts: np.ndarray) -> float:
    """Number of unordered pairs inside groups of the given sizes, as an exact float64."""
    counts = counts.astype(np.float64)
    return float(np.sum(counts * (counts - 1.0) / 2.0))


def f1_score_clusters(cluster_labels: np.ndarray, labels: np.ndarray) -> float:
    """Pair-counting F1 of a clustering against the labels (DiVA ``metrics/f1.py``), via contingency table.

    TP = same-class pairs in the same cluster, precision = TP / same-cluster pairs, recall = TP / same-class
    pairs, F1 = 2PR / (P + R). The reference first relabels each cluster by its point nearest the centroid,
    which does not change the partition, so only the partition is needed here. Where the reference divides
    0 by 0 (no same-class pair in a common cluster, or no same-class pairs at all) this returns 0.0.
    """
    cluster_labels, labels = _check_pair(cluster_labels, labels)
    _, cluster_ids = np.unique(cluster_labels, return_inverse=True)
    _, class_ids = np.unique(labels, return_inverse=True)
    cell_codes = (
        cluster_ids.astype(np.int64) * (class_ids.max() + 1) + class_ids
    )  # one code per (cluster, class)
    tp = _pairs(np.unique(cell_codes, return_counts=True)[1])
    same_class = _pairs(np.bincount(class_ids))
    same_cluster = _pairs(np.bincount(cluster_ids))
    if tp == 0.0:
        return 0.0
    # Same operands and order as the reference (its "precision" is TP / same-class pairs; F1 is symmetric).
    p_ref, r_ref = tp / same_class, tp / same_cluster
    return float(2 * p_ref * r_ref / (p_ref + r_ref))
