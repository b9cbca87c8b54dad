"""Evaluation: exact kNN, faiss k-means, evaltypes, and ``compute_metrics`` over the METRICS registry."""

from dcml_core.evaluation.clustering import faiss_gpu_available, kmeans
from dcml_core.evaluation.evaltypes import (
    ALL_WEIGHTS,
    ALL_WEIGHTS_SOP,
    HEAD_ORDER,
    PAPER_WEIGHTS,
    combine_heads,
    combined_spec,
    evaltype_key,
    expand_evaltypes,
    parse_evaltype,
)
from dcml_core.evaluation.knn import knn
from dcml_core.evaluation.metrics import compute_metrics
from dcml_core.metrics import METRICS, f1_score_clusters, map_at_r, map_c, nmi, recall_at_k

__all__ = [
    "ALL_WEIGHTS",
    "ALL_WEIGHTS_SOP",
    "HEAD_ORDER",
    "METRICS",
    "PAPER_WEIGHTS",
    "combine_heads",
    "combined_spec",
    "compute_metrics",
    "evaltype_key",
    "expand_evaltypes",
    "f1_score_clusters",
    "faiss_gpu_available",
    "kmeans",
    "knn",
    "map_at_r",
    "map_c",
    "nmi",
    "parse_evaltype",
    "recall_at_k",
]
