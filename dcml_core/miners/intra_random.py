"""DiVA ``intra_random`` miner (algorithms.md §2.2.4; DiVA ``batchminer/intra_random.py``).

Milbich, Roth et al., "DiVA", ECCV 2020, https://arxiv.org/abs/2004.13458.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dcml_core.miners.distance_weighted import Triplets, check_miner_inputs
from dcml_core.registry import MINERS

if TYPE_CHECKING:
    from dcml_core.config import MinerConfig


class IntraRandomMiner:
    """B triplets, each drawn entirely from ONE class present in the batch (all draws with replacement).

    For each of the B triplets a class is chosen uniformly among the batch's distinct classes, then anchor,
    positive and negative are three independent uniform draws from that class's batch samples. As in the
    reference (bug-by-design D4), ``a == p`` or ``a == n`` occurs often with 2 samples per class.
    """

    @torch.no_grad()
    def __call__(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> Triplets:
        """Mine ``(anchors, positives, negatives)`` as 1-D long tensors of length B."""
        check_miner_inputs(embeddings, labels)
        batch_size, device = labels.shape[0], labels.device
        if batch_size == 0:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty, empty
        _, class_of_sample, counts = torch.unique(
            labels, return_inverse=True, return_counts=True
        )  # (B,), (C,)
        members = torch.argsort(class_of_sample, stable=True)  # (B,) batch indices grouped by class
        starts = torch.cumsum(counts, 0) - counts  # (C,) first position of each class in `members`
        classes = torch.randint(len(counts), (batch_size,), generator=generator, device=device)  # (B,)
        uniform = torch.rand(
            (3, batch_size), generator=generator, device=device, dtype=torch.float64
        )  # (3, B)
        offsets = (uniform * counts[classes]).long().clamp(max=counts[classes] - 1)  # (3, B)
        a, p, n = members[starts[classes] + offsets]  # 3 x (B,)
        return a, p, n


@MINERS.register("intra_random")
def intra_random_miner(cfg: MinerConfig) -> IntraRandomMiner:
    """DiVA ``--diva_intra random`` (reference ``batchminer/intra_random.py``)."""
    return IntraRandomMiner()
