"""``compute_metrics``: one kNN search and one k-means, shared by every requested metric of the METRICS registry.

Protocol: DiVA/DCML ``metrics/`` (see algorithms.md §5). Query set = gallery set, the query itself excluded.
The metrics themselves are in :mod:`dcml_core.metrics` (pure numpy); this module runs the searches.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dcml_core.evaluation.clustering import faiss_gpu_available, kmeans
from dcml_core.evaluation.faiss_lib import faiss
from dcml_core.evaluation.knn import knn, resolve_device
from dcml_core.metrics import METRICS, Metric, MetricInputs, map_at_r, map_c, recall_at_k, registered

__all__ = ["METRICS", "compute_metrics", "idle_cores", "map_at_r", "map_c", "recall_at_k"]
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


def _check_options(metrics: Sequence[str], recall_ks: Sequence[int], nmi_k: int | None, n: int) -> list[Metric]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown} (or none requested); available: {list(METRICS.available())}")
    specs = registered(metrics)
    if any(s.per_k for s in specs):
        if not recall_ks or any(
            not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1 for k in recall_ks
        ):
            raise ValueError(f"recall_ks must be integers in [1, N-1={n - 1}], got {list(recall_ks)}")
    if nmi_k is not None and any(s.needs == "clusters" for s in specs):
        if not isinstance(nmi_k, (int, np.integer)) or not 1 <= nmi_k <= n:
            raise ValueError(
                f"nmi_k (the number of k-means clusters) must be an integer in [1, N={n}], got {nmi_k!r}"
            )
    return specs


def compute_metrics(
    embeddings: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
    nmi_k: int | None = None,
    metrics: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    kmeans_seed: int | None = None,
    chunk_size: int | None = None,
    num_threads: int | None = None,
    max_threads: int | None = None,
) -> dict[str, float]:
    """All requested metrics of a set of embeddings against itself, keys ``recall@k``, ``nmi``, ``f1``, ...

    Args:
        embeddings: (N, D), evaluated in float32 as in the reference.
        labels: (N,) integer class labels.
        recall_ks: the k of Recall@k.
        nmi_k: clusters of the k-means behind NMI and F1; the reference uses the number of TRAIN classes.
            None: the number of distinct labels given.
        metrics: names from the METRICS registry (``recall``, ``nmi``, ``f1``, ``map_c``, ``map@r``, ...);
            None: all of them. Results come in registration order.
        device: where the kNN runs (None: the device of a tensor input); k-means uses faiss GPU if
            it sees one.
        kmeans_seed: faiss k-means seed; None keeps faiss's default (1234), as the reference.
        chunk_size: queries per kNN block (see ``knn``).
        num_threads: faiss (OpenMP) threads for the CPU kNN and k-means, restored afterwards. None: for
            N > 4,096, the cores that other processes leave idle, measured before each of the two searches
            (``idle_cores``; on a shared machine OpenMP threads that wait for a busy core cost far more than
            they gain), else faiss's setting.
        max_threads: at most this many threads, whatever ``num_threads`` or the idle cores say (a trial's CPU
            share: faiss would otherwise take every core of the node).

    One kNN search (k = the largest that any metric needs) and one k-means (shared by NMI, F1 and any
    other metric that needs clusters) are run.
    The k-means result does not depend on the thread count; the BLAS products behind the kNN distances can
    differ in the last float32 bit between thread counts (in faiss's own search as well), which can only
    swap two neighbours at equal distance up to rounding.
    """
    _check_embeddings(embeddings)
    n = embeddings.shape[0]
    labels = _check_labels(labels, n)
    specs = _check_options(METRICS.available() if metrics is None else metrics, recall_ks, nmi_k, n)
    device = resolve_device(embeddings, device)
    inputs = MetricInputs(labels=labels, ks=tuple(int(k) for k in recall_ks))
    k = min(max([s.knn_depth(inputs) for s in specs if s.needs == "knn"], default=0), n - 1)
    if num_threads is not None and (not isinstance(num_threads, (int, np.integer)) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")

    if max_threads is not None and (not isinstance(max_threads, (int, np.integer)) or max_threads < 1):
        raise ValueError(f"max_threads must be a positive integer or None, got {max_threads!r}")

    def threads() -> int:  # chosen again before each search: the load of a shared machine changes
        chosen = int(num_threads or (idle_cores() if n > _AUTO_THREADS_MIN_N else faiss.omp_get_max_threads()))
        return min(chosen, int(max_threads or chosen))

    knn_labels = np.empty((n, 0), dtype=np.int64)
    if k > 0:
        with _faiss_threads(threads()):
            knn_labels = labels[knn(embeddings, k, device=device, chunk_size=chunk_size)]  # (N, k)
    cluster_labels = None
    if any(s.needs == "clusters" for s in specs):
        n_clusters = int(nmi_k) if nmi_k is not None else len(np.unique(labels))
        gpu = device.type == "cuda" and faiss_gpu_available()
        with _faiss_threads(threads()):
            _, cluster_labels = kmeans(embeddings, n_clusters, seed=kmeans_seed, gpu=gpu)

    inputs = MetricInputs(labels=labels, ks=inputs.ks, knn_labels=knn_labels, cluster_labels=cluster_labels)
    results: dict[str, float] = {}
    for spec in specs:
        results.update(spec.compute(inputs))
    return results
