"""The deep-clustering head: L_dc against k-means pseudo labels it re-computes itself (algorithms.md §2.2.6).

The term owns the classifier, the pseudo labels (one per training image, a buffer in the state dict) and the
re-clustering at the start of every ``diva.dc_update_f``-th epoch. Its ``dc`` embedding head gets no loss,
as in the reference. With this head present the reference switches its default decorrelations off.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dcml_core.head_names import DEEP_CLUSTERING
from dcml_core.losses import DeepClusteringLoss, cluster_pseudo_labels
from dcml_core.objective.terms import Step, Term, TermContext, TrainingAccess
from dcml_core.registry import HEADS


@HEADS.register(DEEP_CLUSTERING)
class DeepClusteringHead(Term):
    """Cross-entropy of a linear classifier on the pooled features f against the image's pseudo label, weight 1."""

    name = "dc"
    decorrelates = False

    pseudo_labels: Tensor

    def __init__(self, ctx: TermContext) -> None:
        super().__init__()
        self.loss = DeepClusteringLoss(in_features=ctx.feature_dim, n_clusters=ctx.diva.dc_ncluster)
        self.update_every = ctx.diva.dc_update_f
        self.pca_dim = ctx.embed_dim
        self.seed = ctx.seed
        self.lr = ctx.lr * 10
        # one pseudo label per training image, set by the first re-clustering (empty until then)
        self.register_buffer("pseudo_labels", torch.empty(0, dtype=torch.long), persistent=True)

    def forward(self, step: Step) -> Tensor:
        return self.loss(step.features.float(), self.pseudo_labels[step.indices.to(self.pseudo_labels.device)])

    def param_groups(self) -> list[dict[str, Any]]:
        return self.loss.param_groups(self.lr)

    @torch.no_grad()
    def before_epoch(self, epoch: int, access: TrainingAccess) -> None:
        """Every dc_update_f epochs: re-draw the classifier, then PCA + k-means of the training features."""
        if epoch % self.update_every:
            return
        self.loss.reset_parameters()
        features = access.train_features()  # (N_train, F)
        labels = cluster_pseudo_labels(features, self.loss.n_clusters, pca_dim=self.pca_dim, niter=20, seed=self.seed)
        self.pseudo_labels = torch.as_tensor(labels, dtype=torch.long, device=self.loss.classifier.weight.device)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # the buffer's length is the number of training images once clustered: take the saved one's shape
        saved = state_dict.get(prefix + "pseudo_labels")
        if saved is not None:
            self.pseudo_labels = torch.empty_like(saved, device=self.pseudo_labels.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
