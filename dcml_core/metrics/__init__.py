"""Evaluation metrics: the METRICS registry and the reference's metrics (no torch, no faiss).

A new metric is one function plus its registration, in any module imported before use::

    @register_metric("precision@1", needs="knn", knn_depth=lambda m: 1, label="P@1")
    def precision_at_1(m: MetricInputs) -> float:
        return float((m.knn_labels[:, 0] == m.labels).mean())

It is then accepted by ``eval.metrics`` (and evaluated by default), computed by evaluation from the shared
kNN / k-means results, accepted by ``--evaluation_metrics`` of the single-run command, logged to MLflow as
``<split>/precision_at_1`` and labelled ``P@1`` in the reports. See docs/extending.md.
"""

from dcml_core.metrics import builtin as _builtin  # noqa: F401  (registers the reference's metrics)
from dcml_core.metrics.base import (
    Metric,
    MetricInputs,
    metric_from_flag,
    metric_label,
    register_metric,
    registered,
)
from dcml_core.metrics.clustering import f1_score_clusters, nmi
from dcml_core.metrics.retrieval import map_at_r, map_c, recall_at_k
from dcml_core.registry import METRICS

__all__ = [
    "METRICS",
    "Metric",
    "MetricInputs",
    "f1_score_clusters",
    "map_at_r",
    "map_c",
    "metric_from_flag",
    "metric_label",
    "nmi",
    "recall_at_k",
    "register_metric",
    "registered",
]
