"""Evaluation: exact kNN, faiss k-means, the reference's retrieval and clustering metrics, evaltypes."""

from dcml_core.evaluation.clustering import f1_score_clusters, faiss_gpu_available, kmeans, nmi
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
from dcml_core.evaluation.metrics import METRICS, compute_metrics, map_at_r, map_c, recall_at_k

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
