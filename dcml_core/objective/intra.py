"""The intra head: alpha_intra L_intra, features within a class (algorithms.md §2.2.4)."""

from __future__ import annotations

from dcml_core.head_names import INTRA
from dcml_core.objective.terms import MinedHead, TermContext
from dcml_core.registry import HEADS


@HEADS.register(INTRA)
class IntraHead(MinedHead):
    """``loss.name`` (its own instance) on triplets drawn inside one class, weighted by ``diva.alpha_intra``."""

    name, head = "intra", INTRA
    MINER = {"random": "intra_random"}  # diva.intra -> MINERS name

    def __init__(self, ctx: TermContext) -> None:
        super().__init__(ctx, miner=self.MINER[ctx.diva.intra], weight=ctx.diva.alpha_intra)
