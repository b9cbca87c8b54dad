"""Exact Euclidean k-nearest neighbours of a set among itself, chunked over the queries.

The reference (DiVA/DCML ``metrics/__init__.py``) searches ``k + 1`` neighbours with ``faiss.IndexFlatL2``
and drops column 0, assuming it is the query. Here the query index itself is removed, which is the same
whenever the query is its own nearest neighbour and stays correct when duplicate points tie with it.
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
import torch

Backend = Literal["auto", "faiss", "torch"]
_TORCH_CHUNK_BYTES = 512 * 2**20  # budget for one (chunk, N) float32 distance block on the torch path
_FAISS_CHUNK = 8192  # queries per faiss call; faiss blocks internally, this only bounds the output buffers


def resolve_device(embeddings: torch.Tensor | np.ndarray, device: str | torch.device | None) -> torch.device:
    """The device to compute on: the given one, else the device of a tensor input, else the CPU."""
    if device is not None:
        device = torch.device(device)
    elif isinstance(embeddings, torch.Tensor):
        device = embeddings.device
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use device='cpu'")
    return device


def _check_knn_args(shape: tuple[int, ...], k: int, exclude_self: bool, chunk_size: int | None) -> None:
    if len(shape) != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {tuple(shape)}")
    n_available = shape[0] - 1 if exclude_self else shape[0]
    if not isinstance(k, (int, np.integer)) or k < 1 or k > n_available:
        raise ValueError(
            f"k must be an integer in [1, {n_available}] for {shape[0]} points "
            f"({'query excluded' if exclude_self else 'query included'}), got {k!r}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def _sort_ties_by_index(dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Reorder each row by (distance, index) so that equal distances come in index order."""
    order = np.lexsort((idx, dist), axis=-1)  # (c, k')
    return np.take_along_axis(idx, order, axis=1)


def _drop_query(idx: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own query index from k + 1 candidates (or the last one if absent) -> (c, k)."""
    keep = idx != query_ids[:, None]  # (c, k + 1)
    keep[keep.all(axis=1), -1] = False  # query tied out of the list by duplicates: drop the farthest
    return idx[keep].reshape(len(idx), k)


def _knn_faiss(x: np.ndarray, k: int, chunk_size: int, exclude_self: bool) -> np.ndarray:
    n, d = x.shape
    index = faiss.IndexFlatL2(d)
    index.add(x)
    n_search = k + 1 if exclude_self else k
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        dist, idx = index.search(x[start:stop], n_search)  # (c, n_search) each
        idx = _sort_ties_by_index(dist, idx)
        out[start:stop] = _drop_query(idx, np.arange(start, stop), k) if exclude_self else idx
    return out


def _knn_torch(x: torch.Tensor, k: int, chunk_size: int, exclude_self: bool) -> np.ndarray:
    n = x.shape[0]
    sq_norms = (x * x).sum(dim=1)  # (N,)
    out = torch.empty((n, k), dtype=torch.int64, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = torch.arange(stop - start, device=x.device)
        # ||q||^2 + ||x||^2 - 2 q.x, the expansion faiss uses as well
        dist = torch.addmm(sq_norms.expand(stop - start, n), x[start:stop], x.T, alpha=-2.0)  # (c, N)
        dist += sq_norms[start:stop, None]
        if exclude_self:
            dist[rows, rows + start] = float("inf")
        values, idx = torch.topk(dist, k, dim=1, largest=False, sorted=True)  # (c, k) each
        idx, perm = idx.sort(dim=1)  # ties -> index order: sort by index, then stably by distance
        values, perm = values.gather(1, perm).sort(dim=1, stable=True)
        out[start:stop] = idx.gather(1, perm)
    return out.cpu().numpy()


@torch.no_grad()
def knn(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    exclude_self: bool = True,
    backend: Backend = "auto",
) -> np.ndarray:
    """Indices (N, k) int64 of the k nearest neighbours (exact, Euclidean) of every point among all points.

    Args:
        embeddings: (N, D) points; computed in float32, as the reference does.
        k: neighbours per query.
        device: where to compute; None takes the device of a tensor input (else the CPU).
        chunk_size: queries per block; None picks one that keeps a block near 512 MB.
        exclude_self: remove the query itself from its own neighbour list.
        backend: ``faiss`` (IndexFlatL2, CPU), ``torch`` (matmul + topk on ``device``), or ``auto``:
            torch on CUDA, faiss on the CPU (the faster one there).

    Rows are ordered by increasing distance; equal distances are ordered by index, so the output is
    deterministic.
    """
    _check_knn_args(tuple(embeddings.shape), k, exclude_self, chunk_size)
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    device = resolve_device(embeddings, device)
    if backend == "auto":
        backend = "torch" if device.type == "cuda" else "faiss"
    if backend == "faiss":
        if device.type != "cpu":
            raise ValueError("backend 'faiss' runs on the CPU here; use backend='torch' for device 'cuda'")
        x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
        x = np.ascontiguousarray(x, dtype=np.float32)
        return _knn_faiss(x, int(k), chunk_size or _FAISS_CHUNK, exclude_self)
    x = torch.as_tensor(embeddings).to(device=device, dtype=torch.float32).contiguous()
    auto_chunk = max(1, _TORCH_CHUNK_BYTES // (4 * 2 * x.shape[0]))
    return _knn_torch(x, int(k), chunk_size or auto_chunk, exclude_self)
