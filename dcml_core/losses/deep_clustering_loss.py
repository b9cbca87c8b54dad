"""DiVA Deep-Clustering auxiliary loss and its PCA + k-means pseudo labels (algorithms.md §2.2.6).

Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features", ECCV 2018,
https://arxiv.org/abs/1807.05520; reference code: DiVA ``criteria/dc.py``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DeepClusteringLoss(nn.Module):
    """Cross-entropy of a bias-free linear classifier on the pooled features against k-means pseudo labels.

    ``reset_parameters`` re-draws the classifier ~ N(0, std=1/in_features) as the reference does before every
    re-clustering (the optimizer state is not reset there). Per-sample pseudo labels are looked up by the
    caller (``pseudo_labels[dataset_index]``) from :func:`cluster_pseudo_labels`.
    """

    def __init__(self, in_features: int = 2048, n_clusters: int = 300) -> None:
        super().__init__()
        if in_features < 1 or n_clusters < 2:
            raise ValueError(f"need in_features >= 1 and n_clusters >= 2, got {in_features}, {n_clusters}")
        self.in_features = int(in_features)
        self.n_clusters = int(n_clusters)
        self.classifier = nn.Linear(self.in_features, self.n_clusters, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialise the classifier weights ~ N(0, std = 1/in_features)."""
        self.classifier.weight.normal_(0.0, 1.0 / self.in_features)

    def param_groups(self, lr_x10: float) -> list[dict]:
        """Optimizer group for the classifier; the caller passes 10x the network lr. No weight decay."""
        return [{"params": list(self.classifier.parameters()), "lr": float(lr_x10), "weight_decay": 0.0}]

    def forward(self, features: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``classifier(features)`` ``(B, F)`` against ``pseudo_labels`` ``(B,)``."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"features must be (B, {self.in_features}), got {tuple(features.shape)}")
        if pseudo_labels.shape != (features.shape[0],):
            raise ValueError(
                f"pseudo_labels must be ({features.shape[0]},), got {tuple(pseudo_labels.shape)}"
            )
        return F.cross_entropy(self.classifier(features), pseudo_labels.to(features.device).long())


def cluster_pseudo_labels(
    features: np.ndarray, n_clusters: int, pca_dim: int, niter: int = 20, seed: int = 1234
) -> np.ndarray:
    """PCA to ``pca_dim`` (faiss ``PCAMatrix``), faiss k-means, and each row's nearest centroid ``(N,)``.

    As the reference: ``min_points_per_centroid=1``, ``max_points_per_centroid=1e9``, ``niter`` iterations,
    exact L2 assignment. ``seed`` defaults to faiss's own default seed (1234), i.e. the reference behaviour.
    """
    from dcml_core.evaluation.faiss_lib import faiss  # lazy: only needed at re-clustering time

    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, F), got shape {x.shape}")
    n, dim = x.shape
    if not 1 <= pca_dim <= dim:
        raise ValueError(f"pca_dim must be in [1, {dim}] (feature dimension), got {pca_dim}")
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}] (number of samples), got {n_clusters}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; cannot cluster")
    x = np.ascontiguousarray(x, dtype=np.float32)
    pca = faiss.PCAMatrix(dim, pca_dim)
    pca.train(x)
    reduced = np.ascontiguousarray(pca.apply(x), dtype=np.float32)  # (N, pca_dim)
    kmeans = faiss.Clustering(pca_dim, n_clusters)
    kmeans.niter = int(niter)
    kmeans.seed = int(seed)
    kmeans.min_points_per_centroid = 1
    kmeans.max_points_per_centroid = 1_000_000_000
    kmeans.train(reduced, faiss.IndexFlatL2(pca_dim))
    centroids = faiss.vector_float_to_array(kmeans.centroids).reshape(n_clusters, pca_dim)
    index = faiss.IndexFlatL2(pca_dim)
    index.add(centroids)
    _, assignment = index.search(reduced, 1)  # (N, 1)
    return assignment.reshape(-1).astype(np.int64)
