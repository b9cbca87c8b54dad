"""Embedding collapse, named rather than scored.

A network whose embeddings all lie at one point scores the Recall@1 that kNN's tie-breaking gives (e.g. 40 of
2,120 demo test images), which reads as a low score, not as a failure. Every evaluation therefore measures how
spread the embeddings are: the mean per-dimension standard deviation of the L2-normalised embeddings times
sqrt(D). It is about 1 for embeddings spread evenly over the sphere, 0.15-0.4 for untrained networks measured
here, and 0 when every image is mapped to the same vector (measured: 3e-5 for the collapsed DCML + DiVA runs of
the old demo). Below :data:`SPREAD_FLOOR` a run is called collapsed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dcml_core.metric_names import metric_key

if TYPE_CHECKING:
    import torch

SPREAD = "embedding_spread"
COLLAPSED_KEY = "collapsed"  # key of a sweep result: 1.0 when the trial ended because its embeddings collapsed
SPREAD_FLOOR = 0.01


class EmbeddingCollapseError(RuntimeError):
    """Every embedding of a split lies at (nearly) one point: the network no longer tells images apart."""


def embedding_spread(embeddings: torch.Tensor) -> float:
    """Mean per-dimension std of the L2-normalised rows of (N, D) ``embeddings``, times sqrt(D)."""
    import torch.nn.functional as F  # local: the commands import this module before torch

    unit = F.normalize(embeddings.float(), dim=-1)  # (N, D)
    return float(unit.std(dim=0, unbiased=False).mean() * math.sqrt(unit.shape[1]))


def collapse_message(metrics: dict[str, float], split: str = "val") -> str | None:
    """Why the ``split`` embeddings count as collapsed, or None when they are spread (or were not measured)."""
    spread = metrics.get(metric_key(split, SPREAD))
    if spread is None or spread >= SPREAD_FLOOR:
        return None
    return (
        f"embeddings collapsed: the {split} embeddings lie at one point (spread {spread:.2g} < {SPREAD_FLOOR}), "
        "so every image gets the same vector and Recall@K is what kNN's tie-breaking gives; lower the learning "
        "rate or the auxiliary loss weights (docs/demo.md explains the usual cause)"
    )
