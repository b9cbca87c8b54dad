"""The training objective: a list of terms, summed in one loop, and its construction from the configuration.

``margin`` (Revisiting, algorithms.md §1): the discriminative head's term only.
``diva`` (§2.2): one term per head in ``model.features`` (registry order: disc, ssl, shared, intra, dc) + L_sep.
``dcml`` (§3.2): J_reinf first, then the DiVA terms on the normalised composites, then the optional
discriminative loss on the sub-embeddings (§3.6).

The terms are summed in list order, which is the reference's order (the float sum is order-sensitive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dcml_core.config import ExperimentConfig
from dcml_core.models.dcml_net import composites_per_head
from dcml_core.objective.terms import (
    DecorrelationTerm,
    SelfReinforcedTerm,
    Step,
    SubembeddingTerm,
    Term,
    TermContext,
    TrainingAccess,
)
from dcml_core.registry import HEADS


class Objective(nn.Module):
    """Weighted sum of terms; ``forward`` returns the total loss and each term's value (for logging).

    The terms' state (margin betas, key encoder and queue, decorrelation regressors, pseudo labels) is under
    ``terms.<name>.`` in the state dict.
    """

    def __init__(self, terms: Sequence[Term]) -> None:
        super().__init__()
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"objective terms need distinct names, got {names}")
        self.terms = nn.ModuleDict({t.name: t for t in terms})

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
        """Total loss and its weighted terms. ``keys`` are the second view's key embeddings (:meth:`keys`)."""
        heads = {name: h.float() for name, h in heads.items()}
        step = Step(heads, features, aux, labels, indices, keys, generator)
        values = {name: term(step) for name, term in self.terms.items()}
        total = torch.stack(list(values.values())).sum()
        return total, {name: float(value.detach()) for name, value in values.items()}

    def param_groups(self) -> list[dict[str, Any]]:
        """Every term's optimiser groups, in term order."""
        return [group for term in self.terms.values() for group in term.param_groups()]

    def group_owners(self) -> list[str]:
        """The term name of each group of :meth:`param_groups`."""
        return [term.name for term in self.terms.values() for _ in term.param_groups()]

    def before_epoch(
        self, epoch: int, access: TrainingAccess, run: Callable[[str, Callable[[], None]], None] | None = None
    ) -> None:
        """Each term's epoch hook (queue pre-fill, re-clustering), in term order; ``run(name, hook)`` runs each
        (the engine's out-of-memory handling retries one term's hook, not the ones before it)."""
        for name, term in self.terms.items():
            hook = lambda term=term: term.before_epoch(epoch, access)  # noqa: E731
            run(name, hook) if run is not None else hook()

    def keys(self, images: Tensor) -> Tensor | None:
        """Key embeddings of a batch's second view, if a term needs one (None otherwise)."""
        for term in self.terms.values():
            if term.second_view:
                return term.keys(images)
        return None

    def after_step(self, model: nn.Module, keys: Tensor | None) -> None:
        """Each term's hook after the optimiser step (momentum update and enqueue)."""
        for term in self.terms.values():
            term.after_step(model, keys)


def build_objective(cfg: ExperimentConfig, model: nn.Module, n_train_classes: int, feature_dim: int) -> Objective:
    """The objective of ``cfg``: its terms get the sub-configurations they read, never the whole ``cfg``."""
    m = cfg.model
    dcml = m.method == "dcml"
    head_dim = m.embed_dim * (composites_per_head(m.compos_num, m.features) if dcml else 1)
    ctx = TermContext(
        loss=cfg.loss,
        miner=cfg.miner,
        diva=cfg.diva,
        model=model,
        n_classes=n_train_classes,
        feature_dim=feature_dim,
        embed_dim=m.embed_dim,
        head_dim=head_dim,
        batch_size=cfg.data.batch_size,
        lr=cfg.optim.lr,
        seed=cfg.seed,
    )
    terms: list[Term] = [SelfReinforcedTerm()] if dcml else []
    terms += [HEADS.build(name, ctx=ctx) for name in HEADS.available() if name in m.features]
    directions = cfg.diva.resolved_decorrelations(m.features) if m.method in ("diva", "dcml") else ()
    if directions:
        terms.append(DecorrelationTerm(head_dim, directions, cfg.diva))
    if dcml and m.dis_on_subembeddings:
        terms.append(SubembeddingTerm(ctx))
    return Objective(terms)
