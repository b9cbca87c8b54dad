"""Loss functions of DiVA / DCML on the Revisiting-DML base.

``LOSSES`` holds the losses that ``loss.name`` selects for the mined heads (discriminative, shared, intra and
DCML's sub-embeddings). A builder is called as ``builder(cfg=LossConfig, n_classes=int)`` and returns an
``nn.Module`` with ``forward(embeddings (B, D), labels (B,), indices_tuple) -> scalar`` (the miner's
``(anchors, positives, negatives)``); if it has parameters, ``param_groups(lr)`` may give their optimiser
groups (``loss.beta_lr``). DaNCE, the decorrelation and the deep-clustering loss belong to their heads /
terms (``dcml_core/objective/``), not to the registry. Importing this package registers the built-ins.
"""

from dcml_core.losses.dance_loss import DanceLoss
from dcml_core.losses.decorrelation_loss import DecorrelationLoss
from dcml_core.losses.deep_clustering_loss import DeepClusteringLoss, cluster_pseudo_labels
from dcml_core.losses.gradient_reversal import GradientReversal, grad_reverse
from dcml_core.losses.margin_loss import MarginLoss
from dcml_core.losses.self_reinforced_loss import self_reinforced_loss
from dcml_core.registry import LOSSES

__all__ = [
    "DanceLoss",
    "DecorrelationLoss",
    "DeepClusteringLoss",
    "GradientReversal",
    "LOSSES",
    "MarginLoss",
    "cluster_pseudo_labels",
    "grad_reverse",
    "self_reinforced_loss",
]
