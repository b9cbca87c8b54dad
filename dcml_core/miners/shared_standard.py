"""DiVA ``standard`` sharing miner (algorithms.md §2.2.3; DiVA ``batchminer/shared_neg_distance.py``).

Milbich, Roth et al., "DiVA", ECCV 2020, https://arxiv.org/abs/2004.13458.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dcml_core.miners.distance_weighted import (
    Triplets,
    check_miner_inputs,
    negative_distribution,
    sample_rows,
)
from dcml_core.registry import MINERS

if TYPE_CHECKING:
    from dcml_core.config import MinerConfig


class SharedStandardMiner:
    """Every sample is an anchor; negative distance-weighted among other classes; positive from a third class.

    The positive is uniform over samples whose class differs from both the anchor's and the negative's.
    The reference crashes (empty ``np.random.choice``) when an anchor has no negative or no such third-class
    sample; those anchors are dropped here instead. Triplets come in ascending anchor order.
    """

    def __init__(self, lower_cutoff: float = 0.5) -> None:
        if lower_cutoff <= 0:
            raise ValueError(f"lower_cutoff must be > 0 (log of distance), got {lower_cutoff}")
        self.lower_cutoff = float(lower_cutoff)

    @torch.no_grad()
    def __call__(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> Triplets:
        """Mine ``(anchors, positives, negatives)`` as 1-D long tensors."""
        check_miner_inputs(embeddings, labels)
        probs, has_negative = negative_distribution(embeddings.detach(), labels, self.lower_cutoff)
        anchors = has_negative.nonzero().squeeze(1)  # (A,)
        negatives = sample_rows(probs[anchors], generator)  # (A,)
        third_class = (labels.unsqueeze(0) != labels[anchors].unsqueeze(1)) & (
            labels.unsqueeze(0) != labels[negatives].unsqueeze(1)
        )  # (A, B)
        keep = third_class.any(dim=1)  # (A,)
        positives = sample_rows(third_class[keep].double(), generator)  # (T,)
        return anchors[keep], positives, negatives[keep]


@MINERS.register("shared_neg_distance")
def shared_neg_distance_miner(cfg: MinerConfig) -> SharedStandardMiner:
    """DiVA ``--diva_sharing standard`` (reference ``batchminer/shared_neg_distance.py``)."""
    return SharedStandardMiner(lower_cutoff=cfg.lower_cutoff)
