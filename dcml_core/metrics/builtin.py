"""The reference's metrics (algorithms.md §5), registered in the order evaluation reports them."""

from __future__ import annotations

from dcml_core.metrics.base import MetricInputs, register_metric
from dcml_core.metrics.clustering import f1_score_clusters, nmi
from dcml_core.metrics.retrieval import map_at_r, map_c, recall_at_k


@register_metric(
    "recall", needs="knn", knn_depth=lambda m: max(m.ks), per_k=True, label="R@{k}", flags=("e_recall",)
)
def _recall(m: MetricInputs) -> dict[int, float]:
    return recall_at_k(m.knn_labels, m.labels, m.ks)


@register_metric("nmi", needs="clusters", label="NMI")
def _nmi(m: MetricInputs) -> float:
    return nmi(m.cluster_labels, m.labels)


@register_metric("f1", needs="clusters", label="F1")
def _f1(m: MetricInputs) -> float:
    return f1_score_clusters(m.cluster_labels, m.labels)


@register_metric("map_c", needs="knn", knn_depth=lambda m: m.largest_class, label="mAP_c", paper=False, flags=("mAP_c",))
def _map_c(m: MetricInputs) -> float:
    return map_c(m.knn_labels, m.labels)


@register_metric("map@r", needs="knn", knn_depth=lambda m: m.largest_class - 1, label="MAP@R", flags=("mAP@R",))
def _map_at_r(m: MetricInputs) -> float:
    return map_at_r(m.knn_labels, m.labels)
