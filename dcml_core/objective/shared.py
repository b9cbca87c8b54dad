"""The shared head: alpha_shared L_shared, features shared across classes (algorithms.md §2.2.3)."""

from __future__ import annotations

from dcml_core.head_names import SHARED
from dcml_core.objective.terms import MinedHead, TermContext
from dcml_core.registry import HEADS


@HEADS.register(SHARED)
class SharedHead(MinedHead):
    """``loss.name`` (its own instance) with the miner ``diva.sharing`` names, weighted by ``diva.alpha_shared``.

    The loss receives the original labels, so a margin beta is indexed by the anchor's true class.
    """

    name, head = "shared", SHARED
    MINER = {"random": "random_distance", "standard": "shared_neg_distance"}  # diva.sharing -> MINERS name

    def __init__(self, ctx: TermContext) -> None:
        super().__init__(ctx, miner=self.MINER[ctx.diva.sharing], weight=ctx.diva.alpha_shared)
