"""Loss functions of DiVA / DCML on the Revisiting-DML base (re-exports only)."""

from dcml_core.losses.dance_loss import DanceLoss
from dcml_core.losses.decorrelation_loss import DecorrelationLoss
from dcml_core.losses.deep_clustering_loss import DeepClusteringLoss, cluster_pseudo_labels
from dcml_core.losses.gradient_reversal import GradientReversal, grad_reverse
from dcml_core.losses.margin_loss import MarginLoss
from dcml_core.losses.self_reinforced_loss import self_reinforced_loss

__all__ = [
    "DanceLoss",
    "DecorrelationLoss",
    "DeepClusteringLoss",
    "GradientReversal",
    "MarginLoss",
    "cluster_pseudo_labels",
    "grad_reverse",
    "self_reinforced_loss",
]
