"""Names of the embedding heads, defined once (no torch: the configuration imports them).

The networks build one embedding per name in ``model.features``; the objective's ``HEADS`` registry
(``dcml_core/objective/``) says what each head trains. ``DIVA_HEADS`` is the reference order of DiVA's four
heads: the order of the paper's evaltype weights (algorithms.md §2.5) and of DCML's composites c_1..c_4 (§3.1).
"""

from __future__ import annotations

DISCRIMINATIVE = "discriminative"  # the class-discriminative head: trained by every method, listed first
SELFSIMILARITY = "selfsimilarity"
SHARED = "shared"
INTRA = "intra"
DEEP_CLUSTERING = "dc"  # DiVA's deep-clustering variant (§2.2.6)

DIVA_HEADS: tuple[str, ...] = (DISCRIMINATIVE, SELFSIMILARITY, SHARED, INTRA)
