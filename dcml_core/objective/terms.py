"""The pieces an objective is made of: a training step's inputs, the base class of a term, the build context.

A term is one weighted summand of the training loss with its own parameters and state. Besides ``forward``
it may take part in the training loop through three hooks, which the engine calls via the objective:
``before_epoch`` (e.g. fill the key queue, re-cluster), ``keys`` (embed the second view of the batch, for
heads with ``second_view``) and ``after_step`` (e.g. the momentum update). Losses never call miners themselves:
a mined term runs its miner, then its loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcml_core.config import DivaConfig, LossConfig, MinerConfig
from dcml_core.losses import DecorrelationLoss, self_reinforced_loss
from dcml_core.registry import LOSSES, MINERS


@dataclass(frozen=True)
class Step:
    """One training batch as the terms see it."""

    heads: dict[str, Tensor]  # name -> (B, D_head) float32 head embeddings
    features: Tensor  # (B, F) pooled backbone features
    aux: dict[str, Tensor]  # model extras, e.g. DCML "compositor_logits" (M, B, K), "subembeddings" (B, K*D)
    labels: Tensor  # (B,) class labels
    indices: Tensor  # (B,) dataset indices of the images
    keys: Tensor | None  # (B, D_head) key-encoder embeddings of the second view, if a head asked for them
    generator: torch.Generator | None  # RNG of the miners (None: torch's global RNG)


@dataclass(frozen=True)
class TrainingAccess:
    """What the epoch hooks may use; the engine provides it (the terms never see loaders or devices)."""

    train_images: Callable[[], Iterator[Tensor]]  # view A of one pass of the training sampler, on the device
    train_features: Callable[[], np.ndarray]  # (N_train, F) pooled features, training augmentation, eval mode
    autocast: Callable[[], AbstractContextManager]  # the engine's mixed-precision context


@dataclass(frozen=True)
class TermContext:
    """What terms are built from: the sub-configurations they read plus facts about the model and data."""

    loss: LossConfig
    miner: MinerConfig
    diva: DivaConfig
    model: nn.Module  # the query network (the key encoder is a copy of it)
    n_classes: int  # training classes (one margin beta each)
    feature_dim: int  # pooled backbone features F
    embed_dim: int  # D of model.embed_dim
    head_dim: int  # dimension of one head embedding (DCML: composites per head x D)
    batch_size: int
    lr: float  # the network's learning rate
    seed: int

    def build_loss(self) -> nn.Module:
        """A new instance of the configured loss (``loss.name``), with its own parameters."""
        return LOSSES.build(self.loss.name, cfg=self.loss, n_classes=self.n_classes)

    def build_miner(self, name: str) -> Any:
        """The miner registered as ``name``, configured by the ``miner`` settings."""
        return MINERS.build(name, cfg=self.miner)


class Term(nn.Module):
    """One summand of the objective; ``name`` is its key in logs (``train/loss_<name>``) and state dicts.

    Registered heads (``HEADS``) declare ``name`` (their term's name), ``second_view`` and ``decorrelates`` as
    class attributes and are built as ``cls(ctx: TermContext)``.
    """

    name: ClassVar[str]
    second_view: ClassVar[bool] = False  # needs the key encoder's embedding of a second augmented view
    decorrelates: ClassVar[bool] = True  # False: the head switches the reference's default L_sep off

    def forward(self, step: Step) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups of the term's parameters (own learning rate, no weight decay)."""
        return []

    def before_epoch(self, epoch: int, access: TrainingAccess) -> None:
        """Called before every training epoch; ``epoch`` counts the finished ones."""

    def keys(self, images: Tensor) -> Tensor | None:
        """Key embeddings of a second view (B, D) for ``Step.keys``; only for ``second_view`` terms."""
        return None

    def after_step(self, model: nn.Module, keys: Tensor | None) -> None:
        """Called after each optimiser step with the step's keys."""


def loss_param_groups(loss: nn.Module, lr: float) -> list[dict[str, Any]]:
    """The loss's own groups (``loss.param_groups(lr)``), else one group of its trainable parameters."""
    if hasattr(loss, "param_groups"):
        return loss.param_groups(lr)
    params = [p for p in loss.parameters() if p.requires_grad]
    return [{"params": params, "lr": float(lr), "weight_decay": 0.0}] if params else []


class MinedTerm(Term):
    """``weight * loss(z, labels, miner(z.detach(), labels))`` for an embedding ``z`` of the step.

    The loss is the configured one (``loss.name``; its parameters learn at ``loss.beta_lr``). A weight of None
    means 1 (the term is not multiplied at all).
    """

    def __init__(self, ctx: TermContext, miner: str, weight: float | None = None) -> None:
        super().__init__()
        self.loss = ctx.build_loss()
        self.miner = ctx.build_miner(miner)
        self.weight = weight
        self.lr = ctx.loss.beta_lr

    def embedding(self, step: Step) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, step: Step) -> Tensor:
        z = self.embedding(step)  # (B, D)
        value = self.loss(z, step.labels, self.miner(z.detach(), step.labels, step.generator))
        return value if self.weight is None else self.weight * value

    def param_groups(self) -> list[dict[str, Any]]:
        return loss_param_groups(self.loss, self.lr)


class MinedHead(MinedTerm):
    """A mined term on the head embedding named ``head`` (the discriminative, shared and intra heads)."""

    head: ClassVar[str]

    def embedding(self, step: Step) -> Tensor:
        return step.heads[self.head]  # (B, D)


class SelfReinforcedTerm(Term):
    """DCML's J_reinf on the compositor logits, weight 1 (algorithms.md §3.2)."""

    name = "reinf"

    def forward(self, step: Step) -> Tensor:
        return self_reinforced_loss(step.aux["compositor_logits"].float())


class DecorrelationTerm(Term):
    """DiVA's adversarial decorrelation L_sep between heads (§2.2.5); the regressors learn at decorrnet_lr."""

    name = "sep"

    def __init__(self, head_dim: int, directions: tuple[str, ...], diva: DivaConfig) -> None:
        super().__init__()
        self.loss = DecorrelationLoss(
            head_dim, directions, diva.rho_decorrelation, hidden_dim=diva.decorrnet_dim, rho_broadcast=diva.rho_broadcast
        )
        self.lr = diva.decorrnet_lr

    def forward(self, step: Step) -> Tensor:
        return self.loss(step.heads)

    def param_groups(self) -> list[dict[str, Any]]:
        return self.loss.param_groups(self.lr)


class SubembeddingTerm(MinedTerm):
    """DCML §3.6 reconstruction: the configured loss and miner on the normalised sub-embeddings n(Z), weight 1."""

    name = "subemb"

    def __init__(self, ctx: TermContext) -> None:
        super().__init__(ctx, miner=ctx.miner.name)

    def embedding(self, step: Step) -> Tensor:
        return F.normalize(step.aux["subembeddings"].float(), dim=-1)  # (B, K*D)
