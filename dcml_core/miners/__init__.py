"""Batch miners returning ``(anchors, positives, negatives)`` index tensors (no autograd, vectorised)."""

from dcml_core.miners.distance_weighted import (
    DistanceWeightedMiner,
    negative_distribution,
    pairwise_distances,
)
from dcml_core.miners.intra_random import IntraRandomMiner
from dcml_core.miners.label_permutation import LabelPermutationMiner
from dcml_core.miners.rho_distance import RhoDistanceMiner
from dcml_core.miners.shared_standard import SharedStandardMiner

__all__ = [
    "DistanceWeightedMiner",
    "IntraRandomMiner",
    "LabelPermutationMiner",
    "RhoDistanceMiner",
    "SharedStandardMiner",
    "negative_distribution",
    "pairwise_distances",
]
