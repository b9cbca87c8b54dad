"""The training objective of one method: every criterion, miner and the MoCo key encoder in one module.

``margin`` (Revisiting, algorithms.md §1): margin loss + distance-weighted miner on the single head.
``diva`` (§2.2): L_disc + a_ssl L_DaNCE + a_shared L_shared + a_intra L_intra (+ L_dc) + L_sep.
``dcml`` (§3.2): J_reinf + the DiVA objective on the normalised composites (+ an optional discriminative loss
on the sub-embeddings, §3.6).

Losses never call miners themselves: :meth:`Objective.forward` runs each miner, then its loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcml_core.config import ExperimentConfig
from dcml_core.losses import (
    DanceLoss,
    DecorrelationLoss,
    DeepClusteringLoss,
    MarginLoss,
    self_reinforced_loss,
)
from dcml_core.miners import (
    DistanceWeightedMiner,
    IntraRandomMiner,
    LabelPermutationMiner,
    SharedStandardMiner,
)
from dcml_core.models import KeyQueue, MomentumEncoder


class Objective(nn.Module):
    """All criteria of a run; ``forward`` returns the total loss and its terms (for logging)."""

    def __init__(self, cfg: ExperimentConfig, model: nn.Module, n_train_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        features = cfg.model.features
        method = cfg.model.method
        m, d = cfg.loss, cfg.diva
        self.features = features
        self.method = method
        # DCML: each head concatenates compos_num / n_heads composites of embed_dim each (§3.1)
        head_dim = cfg.model.embed_dim * (cfg.model.compos_num // len(features) if method == "dcml" else 1)

        def margin() -> MarginLoss:
            return MarginLoss(n_train_classes, margin=m.margin, beta=m.beta, nu=m.nu, beta_constant=m.beta_constant)

        self.miner = DistanceWeightedMiner(
            lower_cutoff=cfg.miner.lower_cutoff,
            upper_cutoff=cfg.miner.upper_cutoff,
            apply_upper_cutoff=cfg.miner.apply_upper_cutoff,
        )
        self.criteria = nn.ModuleDict({"discriminative": margin()})
        self.key_encoder: MomentumEncoder | None = None
        self.queue: KeyQueue | None = None
        self.decorrelation: DecorrelationLoss | None = None
        self.dc: DeepClusteringLoss | None = None
        if "selfsimilarity" in features:
            self.dance = DanceLoss(
                temperature=d.moco_temperature,
                lower_cutoff=d.moco_lower_cutoff,
                upper_cutoff=d.moco_upper_cutoff,
                fixed=d.fixed,
            )
            self.key_encoder = MomentumEncoder(model, momentum=d.moco_momentum)
            self.queue = KeyQueue(head_dim, d.moco_n_key_batches * cfg.data.batch_size)
        if "shared" in features:
            self.criteria["shared"] = margin()
            self.shared_miner = (
                LabelPermutationMiner(self.miner)
                if d.sharing == "random"
                else SharedStandardMiner(lower_cutoff=cfg.miner.lower_cutoff)
            )
        if "intra" in features:
            self.criteria["intra"] = margin()
            self.intra_miner = IntraRandomMiner()
        if "dc" in features:
            self.dc = DeepClusteringLoss(in_features=feature_dim, n_clusters=d.dc_ncluster)
        directions = d.resolved_decorrelations(features) if method in ("diva", "dcml") else ()
        if directions:
            self.decorrelation = DecorrelationLoss(
                head_dim, directions, d.rho_decorrelation, hidden_dim=d.decorrnet_dim, rho_broadcast=d.rho_broadcast
            )
        if method == "dcml" and cfg.model.dis_on_subembeddings:
            self.criteria["subembeddings"] = margin()
        # pseudo labels of the deep-clustering variant, one per training image (-1 = not clustered yet)
        self.register_buffer("pseudo_labels", torch.empty(0, dtype=torch.long), persistent=True)

    # ------------------------------------------------------------------ optimiser groups
    def param_groups(self) -> list[dict[str, Any]]:
        """Criterion parameter groups with the reference learning rates and no weight decay (§1.5, §2.2)."""
        cfg = self.cfg
        groups: list[dict[str, Any]] = []
        for criterion in self.criteria.values():
            groups += criterion.param_groups(cfg.loss.beta_lr)
        if self.decorrelation is not None:
            groups += self.decorrelation.param_groups(cfg.diva.decorrnet_lr)
        if self.dc is not None:
            groups += self.dc.param_groups(cfg.optim.lr * 10)
        return groups

    # ------------------------------------------------------------------ the loss
    def forward(
        self,
        heads: dict[str, Tensor],
        features: Tensor,
        aux: dict[str, Tensor],
        labels: Tensor,
        indices: Tensor,
        keys: Tensor | None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Total loss and its weighted terms. ``keys`` are the key encoder's self-similarity embeddings."""
        d = self.cfg.diva
        heads = {name: h.float() for name, h in heads.items()}
        terms: dict[str, Tensor] = {}
        if self.method == "dcml":
            terms["reinf"] = self_reinforced_loss(aux["compositor_logits"].float())
        disc = heads["discriminative"]
        terms["disc"] = self.criteria["discriminative"](disc, labels, self.miner(disc.detach(), labels, generator))
        if "selfsimilarity" in heads and self.queue is not None:
            assert keys is not None, "the self-similarity loss needs the key encoder's embeddings"
            dance = self.dance(heads["selfsimilarity"], keys.float(), self.queue.queue)
            terms["ssl"] = d.alpha_ssl * dance
        if "shared" in self.criteria:
            h = heads["shared"]
            terms["shared"] = d.alpha_shared * self.criteria["shared"](
                h, labels, self.shared_miner(h.detach(), labels, generator)
            )
        if "intra" in self.criteria:
            h = heads["intra"]
            terms["intra"] = d.alpha_intra * self.criteria["intra"](
                h, labels, self.intra_miner(h.detach(), labels, generator)
            )
        if self.dc is not None:
            terms["dc"] = self.dc(features.float(), self.pseudo_labels[indices.to(self.pseudo_labels.device)])
        if self.decorrelation is not None:
            terms["sep"] = self.decorrelation(heads)
        if "subembeddings" in self.criteria:
            z = F.normalize(aux["subembeddings"].float(), dim=-1)
            terms["subemb"] = self.criteria["subembeddings"](z, labels, self.miner(z.detach(), labels, generator))
        total = torch.stack(list(terms.values())).sum()
        return total, {name: float(value.detach()) for name, value in terms.items()}

    # ------------------------------------------------------------------ MoCo bookkeeping
    @torch.no_grad()
    def keys(self, images_b: Tensor) -> Tensor | None:
        """Key-encoder self-similarity embeddings of view B (None when the method has no DaNCE)."""
        if self.key_encoder is None:
            return None
        self.key_encoder.key_model.eval()
        heads, _, _ = self.key_encoder.key_model(images_b)
        return heads["selfsimilarity"].float()

    @torch.no_grad()
    def after_step(self, model: nn.Module, keys: Tensor | None) -> None:
        """EMA update of the key encoder, then enqueue this batch's keys (§2.3 steps 6-7)."""
        if self.key_encoder is not None and keys is not None:
            self.key_encoder.update(model)
            self.queue.enqueue(keys)
