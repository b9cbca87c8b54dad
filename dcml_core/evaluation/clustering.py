"""k-means exactly as the reference runs it, and the two clustering metrics on its result: NMI and F1."""

from __future__ import annotations

import functools
import warnings

import faiss
import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score


def faiss_gpu_available() -> bool:
    """True if the installed faiss has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@functools.lru_cache(maxsize=1)
def _gpu_resources() -> faiss.StandardGpuResources:
    return faiss.StandardGpuResources()  # one per process, kept alive as long as any GPU index may use it


def _flat_l2_index(d: int, gpu: bool) -> faiss.Index:
    return faiss.GpuIndexFlatL2(_gpu_resources(), d) if gpu else faiss.IndexFlatL2(d)


def kmeans(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    niter: int = 20,
    seed: int | None = None,
    gpu: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means as in DiVA ``metrics/__init__.py``; returns centroids (k, D) and assignments (N,) int64.

    ``faiss.Clustering(d, k)`` with ``niter=20``, ``min_points_per_centroid=1``,
    ``max_points_per_centroid=1e9`` (no subsampling), faiss's default seed when ``seed`` is None, trained
    with an ``IndexFlatL2``; every point is then assigned to its nearest centroid. ``gpu=True`` uses faiss
    GPU indexes when faiss sees a GPU and otherwise warns and runs on the CPU.
    """
    x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {x.shape}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"the number of clusters must be an integer in [1, N={x.shape[0]}], got {k!r}")
    if gpu and not faiss_gpu_available():
        warnings.warn("kmeans(gpu=True): faiss has no usable GPU here; running on the CPU", stacklevel=2)
        gpu = False
    x = np.ascontiguousarray(x, dtype=np.float32)  # (N, D)
    n, d = x.shape
    clustering = faiss.Clustering(d, int(k))
    clustering.niter = niter
    clustering.min_points_per_centroid = 1
    clustering.max_points_per_centroid = 1_000_000_000
    if seed is not None:
        clustering.seed = seed
    clustering.train(x, _flat_l2_index(d, gpu))
    centroids = faiss.vector_float_to_array(clustering.centroids).reshape(int(k), d)  # (k, D)
    search_index = _flat_l2_index(d, gpu)
    search_index.add(centroids)
    _, assignments = search_index.search(x, 1)  # (N, 1)
    return centroids, assignments[:, 0].astype(np.int64)


def _check_pair(cluster_labels: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cluster_labels, labels = np.asarray(cluster_labels).reshape(-1), np.asarray(labels).reshape(-1)
    if cluster_labels.shape != labels.shape or labels.size == 0:
        raise ValueError(
            f"cluster_labels and labels must be non-empty and of equal length, "
            f"got {cluster_labels.size} and {labels.size}"
        )
    return cluster_labels, labels


def nmi(cluster_labels: np.ndarray, labels: np.ndarray) -> float:
    """NMI with scikit-learn's arithmetic normalisation (the reference's, sklearn >= 0.22)."""
    cluster_labels, labels = _check_pair(cluster_labels, labels)
    # Argument order as in the reference: (clusters, labels).
    return float(normalized_mutual_info_score(cluster_labels, labels, average_method="arithmetic"))


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
