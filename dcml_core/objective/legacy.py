"""Engine states written before the objective became a list of terms (format 1) -> the current format (2).

Format 1 kept the criteria, key encoder, queue, decorrelation and deep-clustering state under their own
attributes of the objective, a separate ``queue_filled`` flag in the engine, and the criteria's optimiser
groups in the order margin losses (disc, shared, intra, subemb), decorrelation, deep clustering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STATE_FORMAT = 2  # the "format" entry of Engine.state_dict()

_PREFIXES = {  # format-1 objective state key prefix -> term key prefix
    "criteria.discriminative.": "terms.disc.loss.",
    "criteria.shared.": "terms.shared.loss.",
    "criteria.intra.": "terms.intra.loss.",
    "criteria.subembeddings.": "terms.subemb.loss.",
    "key_encoder.": "terms.ssl.key_encoder.",
    "queue.": "terms.ssl.queue.",
    "decorrelation.": "terms.sep.loss.",
    "dc.": "terms.dc.loss.",
    "pseudo_labels": "terms.dc.pseudo_labels",
}
_GROUP_ORDER = ("model", "disc", "shared", "intra", "subemb", "sep", "dc")  # format-1 optimiser group order


def upgrade_state(state: dict[str, Any], group_owners: Sequence[str], objective_keys: Sequence[str]) -> dict[str, Any]:
    """A format-2 copy of an engine state; a format-2 state is returned unchanged.

    Args:
        state: ``Engine.state_dict()`` as loaded from a checkpoint.
        group_owners: owner of each optimiser group of the new engine ("model", then term names).
        objective_keys: state-dict keys of the new engine's objective.
    """
    if state.get("format", 1) >= STATE_FORMAT:
        return state
    state = {k: v for k, v in state.items() if k != "queue_filled"}  # now the queue's own `filled` counter
    wanted = set(objective_keys)
    objective = {}
    for key, value in state["objective"].items():
        new = next((new + key[len(old) :] for old, new in _PREFIXES.items() if key.startswith(old)), key)
        if new in wanted:  # format 1 kept an empty pseudo_labels buffer without the deep-clustering head
            objective[new] = value
    state["objective"] = objective
    state["optimizer"] = _reorder_groups(state["optimizer"], list(group_owners))
    state["format"] = STATE_FORMAT
    return state


def _reorder_groups(optimizer: dict[str, Any], owners: list[str]) -> dict[str, Any]:
    """Optimiser state with its groups moved from the format-1 order to ``owners``' order.

    Saved groups keep their parameter ids, and the optimiser matches saved and current groups by position,
    so moving whole groups is enough.
    """
    unknown = sorted(set(owners) - set(_GROUP_ORDER))
    if unknown:
        raise ValueError(f"a format-1 checkpoint cannot hold optimiser groups of the terms {unknown}")
    legacy = sorted(range(len(owners)), key=lambda i: _GROUP_ORDER.index(owners[i]))  # stable
    if legacy == list(range(len(owners))) or len(optimizer["param_groups"]) != len(owners):
        return optimizer  # same order; or a mismatch the optimiser itself reports
    groups = [None] * len(owners)
    for saved, new in zip(optimizer["param_groups"], legacy):
        groups[new] = saved
    return {**optimizer, "param_groups": groups}
