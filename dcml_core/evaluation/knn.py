"""Exact Euclidean k-nearest neighbours of a set among itself, chunked over the queries.

The reference (DiVA/DCML ``metrics/__init__.py``) searches ``k + 1`` neighbours with ``faiss.IndexFlatL2``
and drops column 0, assuming it is the query. Here the query index itself is removed, which is the same
whenever the query is its own nearest neighbour and stays correct when duplicate points tie with it.

On the CPU the default backend is ``faiss_symmetric``: the distance matrix of a set with itself is symmetric,
so each pair of query blocks is computed once and feeds the neighbour heaps of both blocks (about half the
matrix products of ``IndexFlatL2`` for large N).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from dcml_core.evaluation.faiss_lib import faiss

Backend = Literal["auto", "faiss", "faiss_symmetric", "torch"]
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


def _faiss_inner_products(rows: np.ndarray, queries: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``queries @ rows.T`` (len(queries), len(rows)) through the sgemm call of ``IndexFlatL2.search``.

    faiss's ``LinearTransform`` without bias runs ``sgemm("T", "N", len(rows), len(queries), D, 1, rows,
    queries, 0)``, the call of its exhaustive L2 search, so for equal block shapes the products are bit-equal.
    """
    transform = faiss.LinearTransform(rows.shape[1], len(rows), False)
    faiss.copy_array_to_vector(rows.ravel(), transform.A)
    transform.is_trained = True
    transform.apply_noalloc(len(queries), faiss.swig_ptr(queries), faiss.swig_ptr(out))
    return out


def _l2_block(
    queries: np.ndarray, q_norms: np.ndarray, rows: np.ndarray, r_norms: np.ndarray, bufs: tuple
) -> np.ndarray:
    """Squared distances (len(queries), len(rows)) as faiss forms them: (|q|^2 + |r|^2) - 2 q.r, >= 0."""
    size = len(queries) * len(rows)
    ip = _faiss_inner_products(rows, queries, bufs[0][:size].reshape(len(queries), -1))  # (b, c)
    dist = np.add(q_norms[:, None], r_norms[None, :], out=bufs[1][:size].reshape(ip.shape))
    ip *= -2.0  # exact, so the next line rounds once, as faiss does
    dist += ip
    return np.maximum(dist, 0.0, out=dist)


def _knn_faiss_symmetric(x: np.ndarray, k: int, block: int, exclude_self: bool) -> np.ndarray:
    """kNN of ``x`` among itself computing each pair of query blocks once, with faiss's heaps (CPU).

    Blocks of ``block`` queries; block pairs (I, J) with I <= J are computed in sub-blocks of faiss's
    database block size and each distance feeds the heaps of both points. Columns reach every heap in
    increasing index order, so ties are kept and ordered by index as in ``IndexFlatL2``. The products for
    I as queries use faiss's own sgemm and block shapes (bit-equal to ``IndexFlatL2``); J reuses them
    transposed, which can differ from a J-side search by one float32 rounding, so two neighbours whose
    distances agree to ~1e-7 may swap places there.
    """
    n, d = x.shape
    sub = max(1, int(faiss.cvar.distance_compute_blas_database_bs))
    norms = np.empty(n, dtype=np.float32)  # (N,)
    faiss.fvec_norms_L2sqr(faiss.swig_ptr(norms), faiss.swig_ptr(x), d, n)  # the norms faiss uses
    vals = np.full((n, k), np.inf, dtype=np.float32)  # a valid max-heap per row
    ids = np.full((n, k), -1, dtype=np.int64)
    heaps = faiss.float_maxheap_array_t()
    heaps.nh, heaps.k, heaps.val, heaps.ids = n, k, faiss.swig_ptr(vals), faiss.swig_ptr(ids)
    width = min(block, sub)
    bufs = (np.empty(block * width, dtype=np.float32), np.empty(block * width, dtype=np.float32))
    tbuf = torch.empty(block * width, dtype=torch.float32)  # torch: a fast cache-blocked transpose
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        # sub-blocks of J on faiss's database grid (multiples of ``sub``), in increasing order
        cuts = sorted({j0, j1, *range((j0 // sub + 1) * sub, j1, sub)})
        for i0 in range(0, j1, block):
            i1 = min(i0 + block, n)
            for c0, c1 in zip(cuts[:-1], cuts[1:]):
                dist = _l2_block(x[i0:i1], norms[i0:i1], x[c0:c1], norms[c0:c1], bufs)  # (bi, bc)
                if i0 == j0 and exclude_self:
                    dist[np.arange(c0 - i0, c1 - i0), np.arange(c1 - c0)] = np.inf
                heaps.addn(c1 - c0, faiss.swig_ptr(dist), c0, i0, i1 - i0)  # rows I, columns c
                if i0 != j0:
                    dist_t = tbuf[: dist.size].view(c1 - c0, i1 - i0).copy_(torch.from_numpy(dist).T)
                    heaps.addn(i1 - i0, faiss.swig_ptr(dist_t.numpy()), i0, c0, c1 - c0)  # rows c, cols I
    return _sort_ties_by_index(vals, ids)


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
        backend: ``faiss`` (IndexFlatL2, CPU), ``faiss_symmetric`` (each block pair once, faiss's products
            and heaps, CPU), ``torch`` (matmul + topk on ``device``), or ``auto``: torch on CUDA; on the CPU
            faiss_symmetric when N exceeds one block (``chunk_size``, default faiss's 4,096-query block),
            else faiss.

    Rows are ordered by increasing distance; equal distances are ordered by index, so the output is
    deterministic. ``faiss_symmetric`` equals ``faiss`` except where two distances of one query agree to
    float32 rounding (see ``_knn_faiss_symmetric``).
    """
    _check_knn_args(tuple(embeddings.shape), k, exclude_self, chunk_size)
    if backend not in ("auto", "faiss", "faiss_symmetric", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss', 'faiss_symmetric' or 'torch', got {backend!r}")
    device = resolve_device(embeddings, device)
    block = chunk_size or int(faiss.cvar.distance_compute_blas_query_bs)
    if backend == "auto":
        if device.type == "cuda":
            backend = "torch"
        else:
            backend = "faiss_symmetric" if embeddings.shape[0] > block else "faiss"
    if backend in ("faiss", "faiss_symmetric"):
        if device.type != "cpu":
            raise ValueError(
                f"backend {backend!r} runs on the CPU here; use backend='torch' for device 'cuda'"
            )
        x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
        x = np.ascontiguousarray(x, dtype=np.float32)
        if backend == "faiss_symmetric":
            return _knn_faiss_symmetric(x, int(k), block, exclude_self)
        return _knn_faiss(x, int(k), chunk_size or _FAISS_CHUNK, exclude_self)
    x = torch.as_tensor(embeddings).to(device=device, dtype=torch.float32).contiguous()
    auto_chunk = max(1, _TORCH_CHUNK_BYTES // (4 * 2 * x.shape[0]))
    return _knn_torch(x, int(k), chunk_size or auto_chunk, exclude_self)
