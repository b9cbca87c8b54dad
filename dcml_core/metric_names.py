"""Metric names, defined once and used by the engine, the trainable, MLflow and the analysis.

Keys look like ``val/recall_at_1`` for the primary evaltype and ``val/<evaltype key>/recall_at_1`` for the
others (MLflow does not accept ``@`` in names, so ``recall@1`` becomes ``recall_at_1``).
"""

from __future__ import annotations

SPLITS = ("train", "val", "test")
OBJECTIVE = "val/recall_at_1"  # what sweeps optimise (mode max); test metrics are never optimised
EPOCH = "epoch"  # completed epochs, the time attribute of the schedulers
OWN_TIME = "time/own_s"  # a trial's own training + evaluation time so far (the sweep overhead's denominator)


def safe_name(metric: str) -> str:
    """``recall@1`` -> ``recall_at_1``; ``map@r`` -> ``map_at_r``."""
    return metric.replace("@", "_at_")


def metric_key(split: str, metric: str, evaltype_key: str | None = None) -> str:
    """Full, MLflow-safe name of a metric of a split, optionally for a non-primary evaltype."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    middle = f"{evaltype_key}/" if evaltype_key else ""
    return f"{split}/{middle}{safe_name(metric)}"
