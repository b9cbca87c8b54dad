"""Revisiting's ρ-regularised distance miner (``--batch_mining rho_distance``; algorithms.md §1.6).

Roth et al., "Revisiting Training Strategies and Generalization Performance in Deep Metric Learning",
ICML 2020, https://arxiv.org/abs/2002.08473; reference code: Revisiting ``batchminer/rho_distance.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dcml_core.miners.distance_weighted import DistanceWeightedMiner, Triplets, sample_rows
from dcml_core.registry import MINERS

if TYPE_CHECKING:
    from dcml_core.config import MinerConfig


class RhoDistanceMiner:
    """Distance-weighted triplets, of which a fraction ``contrastive_p`` is turned into "push" triplets.

    For each anchor, with probability ``contrastive_p`` the positive is the anchor itself and the negative is
    a uniformly drawn OTHER member of the anchor's class (so the margin loss pushes same-class samples
    apart, regularising the embedding spectrum); otherwise the triplet is the usual distance-weighted one
    (:class:`DistanceWeightedMiner`, whose anchor rule is reused: the class needs another member and the
    batch another class).
    """

    def __init__(self, lower_cutoff: float = 0.5, contrastive_p: float = 0.2) -> None:
        if not 0.0 <= contrastive_p <= 1.0:
            raise ValueError(f"contrastive_p must be a probability in [0, 1], got {contrastive_p}")
        self.contrastive_p = float(contrastive_p)
        self.base = DistanceWeightedMiner(lower_cutoff=lower_cutoff)

    @torch.no_grad()
    def __call__(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> Triplets:
        """Mine ``(anchors, positives, negatives)`` as 1-D long tensors."""
        anchors, positives, negatives = self.base(embeddings, labels, generator)
        flip = torch.rand(anchors.shape, generator=generator, device=anchors.device) < self.contrastive_p
        same_class = self.base.positive_candidates(labels)[anchors[flip]]  # (F, B)
        positives = torch.where(flip, anchors, positives)
        negatives = negatives.clone()
        negatives[flip] = sample_rows(same_class.double(), generator)
        return anchors, positives, negatives


@MINERS.register("rho_distance")
def rho_distance_miner(cfg: MinerConfig) -> RhoDistanceMiner:
    """``miner.name = "rho_distance"`` (Revisiting ``--batch_mining rho_distance``, contrastive_p 0.2)."""
    return RhoDistanceMiner(lower_cutoff=cfg.lower_cutoff)
