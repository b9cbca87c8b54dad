"""Retrieval metrics from shared kNN labels, and ``compute_metrics``, which runs kNN and k-means once each.

Protocol: DiVA/DCML ``metrics/`` (see algorithms.md §5). Query set = gallery set, the query itself excluded.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
import torch

from dcml_core.evaluation.clustering import f1_score_clusters, faiss_gpu_available, kmeans, nmi
from dcml_core.evaluation.knn import knn, resolve_device

METRICS = ("recall", "nmi", "f1", "map_c", "map@r")
_AP_BLOCK = 2**22  # entries of one (rows, width) block in the AP computation
_AUTO_THREADS_MIN_N = 4096  # above this, compute_metrics picks its faiss thread count from the idle cores


_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # /proc/stat "cpu": user nice system [idle iowait] irq softirq steal


def _busy_seconds() -> float | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    return sum(float(fields[i]) for i in _BUSY_FIELDS if i < len(fields)) / os.sysconf("SC_CLK_TCK")


def idle_cores(window: float = 0.1) -> int:
    """Cores that other processes left idle over the last ``window`` seconds (>= 1; all cores off Linux).

    Measured from /proc/stat while this process waits, so it counts the other processes' load right now.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    before, start = _busy_seconds(), time.perf_counter()
    if before is None:
        return cores
    time.sleep(window)
    busy = (_busy_seconds() - before) / (time.perf_counter() - start)  # cores kept busy by others
    return max(1, min(cores, round(cores - busy)))


@contextlib.contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


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


def _check_labels(labels: torch.Tensor | np.ndarray, n: int) -> np.ndarray:
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {labels.shape} and dtype {labels.dtype}"
        )
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries but embeddings has {n} rows; they must match")
    return labels.astype(np.int64)


def _is_real_dtype(embeddings: torch.Tensor | np.ndarray) -> bool:
    if isinstance(embeddings, torch.Tensor):
        return not (embeddings.dtype.is_complex or embeddings.dtype == torch.bool)
    return bool(np.issubdtype(embeddings.dtype, np.floating) or np.issubdtype(embeddings.dtype, np.integer))


def _check_embeddings(embeddings: torch.Tensor | np.ndarray) -> None:
    if not isinstance(embeddings, (torch.Tensor, np.ndarray)):
        raise ValueError(
            f"embeddings must be a torch.Tensor or numpy.ndarray, got {type(embeddings).__name__}"
        )
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 1:
        raise ValueError(
            f"embeddings must be 2-D (N, D) with N >= 2 and D >= 1, got shape {tuple(embeddings.shape)}"
        )
    if not _is_real_dtype(embeddings):
        raise ValueError(f"embeddings must be real numbers, got dtype {embeddings.dtype}")
    if not bool(torch.isfinite(torch.as_tensor(embeddings)).all()):
        raise ValueError(
            "embeddings contain NaN or infinite values; check the model output before evaluating"
        )


def _check_options(metrics: Sequence[str], recall_ks: Sequence[int], nmi_k: int | None, n: int) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown} (or none requested); available: {list(METRICS)}")
    if "recall" in metrics:
        if not recall_ks or any(
            not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1 for k in recall_ks
        ):
            raise ValueError(f"recall_ks must be integers in [1, N-1={n - 1}], got {list(recall_ks)}")
    if nmi_k is not None and ({"nmi", "f1"} & set(metrics)):
        if not isinstance(nmi_k, (int, np.integer)) or not 1 <= nmi_k <= n:
            raise ValueError(
                f"nmi_k (the number of k-means clusters) must be an integer in [1, N={n}], got {nmi_k!r}"
            )


def compute_metrics(
    embeddings: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
    nmi_k: int | None = None,
    metrics: Sequence[str] = METRICS,
    device: str | torch.device | None = None,
    kmeans_seed: int | None = None,
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> dict[str, float]:
    """All requested metrics of a set of embeddings against itself, keys ``recall@k``, ``nmi``, ``f1``, ...

    Args:
        embeddings: (N, D), evaluated in float32 as in the reference.
        labels: (N,) integer class labels.
        recall_ks: the k of Recall@k.
        nmi_k: clusters of the k-means behind NMI and F1; the reference uses the number of TRAIN classes.
            None: the number of distinct labels given.
        metrics: any of ``recall``, ``nmi``, ``f1``, ``map_c``, ``map@r``.
        device: where the kNN runs (None: the device of a tensor input); k-means uses faiss GPU if
            it sees one.
        kmeans_seed: faiss k-means seed; None keeps faiss's default (1234), as the reference.
        chunk_size: queries per kNN block (see ``knn``).
        num_threads: faiss (OpenMP) threads for the CPU kNN and k-means, restored afterwards. None: for
            N > 4,096, the cores that other processes leave idle, measured before each of the two searches
            (``idle_cores``; on a shared machine OpenMP threads that wait for a busy core cost far more than
            they gain), else faiss's setting.

    One kNN search (k = the largest that any metric needs) and one k-means (shared by NMI and F1) are run.
    The k-means result does not depend on the thread count; the BLAS products behind the kNN distances can
    differ in the last float32 bit between thread counts (in faiss's own search as well), which can only
    swap two neighbours at equal distance up to rounding.
    """
    _check_embeddings(embeddings)
    n = embeddings.shape[0]
    labels = _check_labels(labels, n)
    _check_options(metrics, recall_ks, nmi_k, n)
    device = resolve_device(embeddings, device)
    largest_class = int(np.unique(labels, return_counts=True)[1].max())
    needed = [max(recall_ks) if "recall" in metrics else 0]
    needed += [largest_class if "map_c" in metrics else 0, largest_class - 1 if "map@r" in metrics else 0]
    k = min(max(needed), n - 1)
    if num_threads is not None and (not isinstance(num_threads, (int, np.integer)) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")

    def threads() -> int:  # chosen again before each search: the load of a shared machine changes
        return int(num_threads or (idle_cores() if n > _AUTO_THREADS_MIN_N else faiss.omp_get_max_threads()))

    knn_labels = np.empty((n, 0), dtype=np.int64)
    if k > 0:
        with _faiss_threads(threads()):
            knn_labels = labels[knn(embeddings, k, device=device, chunk_size=chunk_size)]  # (N, k)
    cluster_labels = None
    if "nmi" in metrics or "f1" in metrics:
        n_clusters = int(nmi_k) if nmi_k is not None else len(np.unique(labels))
        gpu = device.type == "cuda" and faiss_gpu_available()
        with _faiss_threads(threads()):
            _, cluster_labels = kmeans(embeddings, n_clusters, seed=kmeans_seed, gpu=gpu)

    results: dict[str, float] = {}
    if "recall" in metrics:
        results.update({f"recall@{r}": v for r, v in recall_at_k(knn_labels, labels, recall_ks).items()})
    if "nmi" in metrics:
        results["nmi"] = nmi(cluster_labels, labels)
    if "f1" in metrics:
        results["f1"] = f1_score_clusters(cluster_labels, labels)
    if "map_c" in metrics:
        results["map_c"] = map_c(knn_labels, labels)
    if "map@r" in metrics:
        results["map@r"] = map_at_r(knn_labels, labels)
    return results
