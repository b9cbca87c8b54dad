"""The self-similarity head: alpha_ssl DaNCE against a MoCo key encoder and key queue (algorithms.md §2.2.2, §2.3).

This module owns all MoCo state: the key encoder (an EMA copy of the network), its queue, the queue's
pre-fill before the first epoch and the momentum update after every step. Both live in the state dict, so a
checkpoint resumes them exactly; the queue's own ``filled`` counter says whether it still needs filling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dcml_core.head_names import SELFSIMILARITY
from dcml_core.losses import DanceLoss
from dcml_core.models.momentum import KeyQueue, MomentumEncoder
from dcml_core.objective.terms import Step, Term, TermContext, TrainingAccess
from dcml_core.registry import HEADS


@HEADS.register(SELFSIMILARITY)
class SelfSimilarityHead(Term):
    """``alpha_ssl * DaNCE(q, k, queue)``: q from the network on view A, k from the key encoder on view B."""

    name = "ssl"
    second_view = True

    def __init__(self, ctx: TermContext) -> None:
        super().__init__()
        d = ctx.diva
        self.loss = DanceLoss(
            temperature=d.moco_temperature,
            lower_cutoff=d.moco_lower_cutoff,
            upper_cutoff=d.moco_upper_cutoff,
            fixed=d.fixed,
        )
        self.key_encoder = MomentumEncoder(ctx.model, momentum=d.moco_momentum)
        self.queue = KeyQueue(ctx.head_dim, d.moco_n_key_batches * ctx.batch_size)
        self.n_key_batches = d.moco_n_key_batches
        self.weight = d.alpha_ssl

    def forward(self, step: Step) -> Tensor:
        if step.keys is None:
            raise ValueError("the self-similarity loss needs the key encoder's embeddings of view B (Step.keys)")
        return self.weight * self.loss(step.heads[SELFSIMILARITY], step.keys.float(), self.queue.queue)

    @torch.no_grad()
    def keys(self, images: Tensor) -> Tensor:
        """Key-encoder self-similarity embeddings (B, D) of a batch of images, key network in eval mode."""
        self.key_encoder.key_model.eval()
        heads, _, _ = self.key_encoder.key_model(images)
        return heads[SELFSIMILARITY].float()

    @torch.no_grad()
    def before_epoch(self, epoch: int, access: TrainingAccess) -> None:
        """Pre-fill the queue once with n_key_batches training batches of view A (§2.3 step 1)."""
        if self.queue.is_full:
            return
        keys: list[Tensor] = []
        while len(keys) < self.n_key_batches:
            for images in access.train_images():
                with access.autocast():
                    keys.append(self.keys(images))
                if len(keys) == self.n_key_batches:
                    break
        self.queue.fill(keys)

    @torch.no_grad()
    def after_step(self, model: nn.Module, keys: Tensor | None) -> None:
        """EMA update of the key encoder from ``model``, then enqueue this batch's keys (§2.3 steps 6-7)."""
        if keys is not None:
            self.key_encoder.update(model)
            self.queue.enqueue(keys)
