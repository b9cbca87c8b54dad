"""Batch miners returning ``(anchors, positives, negatives)`` index tensors (no autograd, vectorised).

``MINERS`` maps names to builders called as ``builder(cfg=MinerConfig)``; a miner is called as
``miner(embeddings (B, D), labels (B,), generator) -> (anchors, positives, negatives)``, 1-D long tensors,
drawing only from ``generator`` (or torch's global RNG). ``miner.name`` selects the discriminative head's
miner; the shared and intra heads pick theirs from ``diva.sharing`` / ``diva.intra``. Importing this package
registers the built-ins: distance, rho_distance, random_distance, shared_neg_distance, intra_random.
"""

from dcml_core.miners.distance_weighted import (
    DistanceWeightedMiner,
    negative_distribution,
    pairwise_distances,
)
from dcml_core.miners.intra_random import IntraRandomMiner
from dcml_core.miners.label_permutation import LabelPermutationMiner
from dcml_core.miners.rho_distance import RhoDistanceMiner
from dcml_core.miners.shared_standard import SharedStandardMiner
from dcml_core.registry import MINERS

__all__ = [
    "DistanceWeightedMiner",
    "IntraRandomMiner",
    "LabelPermutationMiner",
    "MINERS",
    "RhoDistanceMiner",
    "SharedStandardMiner",
    "negative_distribution",
    "pairwise_distances",
]
