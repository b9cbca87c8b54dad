"""A registered evaluation metric: one function plus how evaluation, flags and reports name it.

Evaluation (``dcml_core.evaluation.compute_metrics``) runs one kNN search (as deep as the deepest requested
metric needs) and one k-means (if any requested metric needs clusters), then calls every requested metric with
the shared :class:`MetricInputs`. A metric's results are named ``<name>`` (``nmi``) or, for a per-k metric,
``<name>@<k>`` for each k of ``eval.recall_ks`` (``recall@1``); MLflow keys replace ``@`` by ``_at_``
(:func:`dcml_core.metric_names.metric_key`) and reports show :attr:`Metric.label`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dcml_core.metric_names import safe_name
from dcml_core.registry import METRICS

Needs = Literal["knn", "clusters"]


@dataclass(frozen=True)
class MetricInputs:
    """What the metrics read, computed once per set of embeddings and shared by all of them."""

    labels: np.ndarray  # (N,) int64 class labels
    ks: tuple[int, ...] = (1, 2, 4, 8)  # the k of per-k metrics (eval.recall_ks)
    knn_labels: np.ndarray | None = None  # (N, k) labels of each query's k nearest neighbours, itself excluded
    cluster_labels: np.ndarray | None = None  # (N,) k-means cluster of each point

    @property
    def largest_class(self) -> int:
        """Size of the largest class."""
        return int(np.unique(self.labels, return_counts=True)[1].max())


@dataclass(frozen=True)
class Metric:
    """A metric entry of the METRICS registry (build it with :func:`register_metric`).

    Attributes:
        name: configuration name (``eval.metrics``), e.g. ``"map@r"``.
        fn: ``fn(inputs)`` -> a float, or ``{k: float}`` for a per-k metric.
        needs: ``"knn"`` (reads ``knn_labels``) or ``"clusters"`` (reads ``cluster_labels``).
        label: report label; ``{k}`` is replaced by k for a per-k metric (``"R@{k}"``).
        knn_depth: neighbours a kNN metric needs, from the inputs (without kNN results).
        per_k: one value per k of ``eval.recall_ks``.
        paper: a column of the paper tables (analysis/tables.py), after the per-k columns.
        flags: further spellings accepted by ``--evaluation_metrics`` of ``python -m dcml_core.train``.
    """

    name: str
    fn: Callable[[MetricInputs], float | Mapping[int, float]]
    needs: Needs
    label: str
    knn_depth: Callable[[MetricInputs], int] | None = None
    per_k: bool = False
    paper: bool = True
    flags: tuple[str, ...] = ()

    def compute(self, inputs: MetricInputs) -> dict[str, float]:
        """Result names -> values."""
        value = self.fn(inputs)
        if self.per_k:
            return {f"{self.name}@{k}": float(v) for k, v in value.items()}
        return {self.name: float(value)}

    def label_of(self, key: str) -> str | None:
        """The report label of an MLflow-safe result key of this metric (``recall_at_4`` -> ``R@4``), or None."""
        if self.per_k:
            match = re.fullmatch(re.escape(safe_name(self.name)) + r"_at_(\d+)", key)
            return self.label.format(k=match.group(1)) if match else None
        return self.label if key == safe_name(self.name) else None


def register_metric(
    name: str,
    *,
    needs: Needs,
    label: str,
    knn_depth: Callable[[MetricInputs], int] | None = None,
    per_k: bool = False,
    paper: bool = True,
    flags: tuple[str, ...] = (),
) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn(inputs: MetricInputs)`` as metric ``name`` (see :class:`Metric`)."""
    if needs not in ("knn", "clusters"):
        raise ValueError(f"metric {name!r}: needs must be 'knn' or 'clusters', got {needs!r}")
    if (needs == "knn") != (knn_depth is not None):
        raise ValueError(f"metric {name!r}: give knn_depth exactly when needs='knn'")

    def decorator(fn: Callable) -> Callable:
        METRICS.register(name)(Metric(name, fn, needs, label, knn_depth, per_k, paper, flags))
        return fn

    return decorator


def registered(names: Iterable[str] | None = None) -> list[Metric]:
    """Registered metrics in registration order; only those in ``names`` when given (unknown names raise)."""
    if names is None:
        return [METRICS.get(n) for n in METRICS.available()]
    wanted = set(names)
    for name in wanted:
        METRICS.get(name)
    return [METRICS.get(n) for n in METRICS.available() if n in wanted]


def metric_label(key: str) -> str:
    """Report label of an MLflow-safe metric key (``recall_at_4`` -> ``R@4``, ``nmi`` -> ``NMI``); else the key."""
    for metric in registered():
        label = metric.label_of(key)
        if label is not None:
            return label
    return key


def metric_from_flag(token: str) -> tuple[str, int | None]:
    """``--evaluation_metrics`` spelling -> (metric name, k or None): ``e_recall@4`` -> ``("recall", 4)``."""
    metrics = registered()
    for metric in metrics:
        if token in (metric.name, *metric.flags):
            return metric.name, None
    base, _, k = token.rpartition("@")
    for metric in metrics:
        if metric.per_k and base in (metric.name, *metric.flags) and k.isdigit():
            return metric.name, int(k)
    accepted = [f"{s}@K" if m.per_k else s for m in metrics for s in (*m.flags, m.name)]
    raise ValueError(f"unknown evaluation metric {token!r}; accepted: {', '.join(accepted)}")
