"""k-means exactly as the reference runs it (the clustering metrics on its result: ``dcml_core.metrics``)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from dcml_core.evaluation.faiss_lib import faiss


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
