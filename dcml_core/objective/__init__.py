"""The training objective: terms built from the HEADS registry and the method, summed in one loop.

Importing this package registers the built-in heads in the reference's order, which is the order their terms
are summed and their miners draw random numbers: discriminative, selfsimilarity, shared, intra, dc.
A new head is one module with a registered :class:`Term` subclass (see docs/extending.md).
"""

# The registration order is the reference's term order (tests/test_registry.py checks it): keep it.
# isort: off
from dcml_core.objective.discriminative import DiscriminativeHead
from dcml_core.objective.self_similarity import SelfSimilarityHead
from dcml_core.objective.shared import SharedHead
from dcml_core.objective.intra import IntraHead
from dcml_core.objective.deep_clustering import DeepClusteringHead

# isort: on
from dcml_core.objective.legacy import STATE_FORMAT, upgrade_state
from dcml_core.objective.objective import Objective, build_objective
from dcml_core.objective.terms import MinedHead, MinedTerm, Step, Term, TermContext, TrainingAccess
from dcml_core.registry import HEADS

__all__ = [
    "HEADS",
    "STATE_FORMAT",
    "DeepClusteringHead",
    "DiscriminativeHead",
    "IntraHead",
    "MinedHead",
    "MinedTerm",
    "Objective",
    "SelfSimilarityHead",
    "SharedHead",
    "Step",
    "Term",
    "TermContext",
    "TrainingAccess",
    "build_objective",
    "upgrade_state",
]
