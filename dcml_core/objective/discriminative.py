"""The discriminative head: L_disc, the configured loss and miner on the class labels (algorithms.md §2.2.1)."""

from __future__ import annotations

from dcml_core.head_names import DISCRIMINATIVE
from dcml_core.objective.terms import MinedHead, TermContext
from dcml_core.registry import HEADS


@HEADS.register(DISCRIMINATIVE)
class DiscriminativeHead(MinedHead):
    """``loss.name`` with the ``miner.name`` miner on the class labels, weight 1 (the margin baseline's loss)."""

    name, head = "disc", DISCRIMINATIVE

    def __init__(self, ctx: TermContext) -> None:
        super().__init__(ctx, miner=ctx.miner.name)
