"""DiVA ``random`` sharing miner: distance-weighted mining on randomly permuted labels (algorithms.md §2.2.3).

Milbich, Roth et al., "DiVA: Diverse Visual Feature Aggregation for Deep Metric Learning", ECCV 2020,
https://arxiv.org/abs/2004.13458; reference code: DiVA ``batchminer/random_distance.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dcml_core.miners.distance_weighted import (
    DistanceWeightedMiner,
    Triplets,
    check_miner_inputs,
    distance_miner,
)
from dcml_core.registry import MINERS

if TYPE_CHECKING:
    from dcml_core.config import MinerConfig


class LabelPermutationMiner:
    """Permute the batch's label vector, then run the distance-weighted miner with the permuted labels.

    The triplets index the batch; "positives" share a *permuted* label with their anchor. The margin loss
    must still receive the ORIGINAL labels, so that beta is indexed by the anchor's true class (reference).
    """

    def __init__(self, base: DistanceWeightedMiner | None = None) -> None:
        if base is not None and not isinstance(base, DistanceWeightedMiner):
            raise TypeError(f"base must be a DistanceWeightedMiner, got {type(base).__name__}")
        self.base = base if base is not None else DistanceWeightedMiner()

    @torch.no_grad()
    def __call__(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> Triplets:
        """Mine ``(anchors, positives, negatives)`` with labels shuffled by a random permutation."""
        check_miner_inputs(embeddings, labels)
        perm = torch.randperm(labels.shape[0], generator=generator, device=labels.device)  # (B,)
        return self.base(embeddings, labels[perm], generator)


@MINERS.register("random_distance")
def random_distance_miner(cfg: MinerConfig) -> LabelPermutationMiner:
    """DiVA ``--diva_sharing random`` (reference ``batchminer/random_distance.py``)."""
    return LabelPermutationMiner(distance_miner(cfg))
