"""Named search spaces for ``python tune/run.py --space NAME``: one module per space, registered by name.

A space module exports ``SPACE`` (a nested dict mirroring :class:`dcml_core.config.ExperimentConfig`; values
are ``ray.tune`` distributions or constants), ``METRIC`` and ``MODE`` (the objective), ``SCHEDULER`` (ASHA
defaults: ``grace_period``, ``reduction_factor``, ``max_t``), ``DESCRIPTION`` and optionally ``DEFAULTS``
(``num_samples``, ``cpus_per_trial``, ``max_concurrent``). :func:`get` loads and checks one; :func:`available`
lists them.

Example:
    >>> space = get("dcml_cub")
    >>> [cfg.model.compos_num for cfg in space.sample_configs(2, seed=0)]  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib

from search_spaces.search_space import SearchSpace, SearchSpaceError

__all__ = ["SearchSpace", "SearchSpaceError", "available", "get"]

# Registered names, each the module ``search_spaces.<name>``. A new space = a new module + its name here.
_NAMES = (
    "dcml_cub",
    "dcml_cars",
    "dcml_sop",
    "diva_cub",
    "diva_cars",
    "diva_sop",
    "margin_cub",
    "demo",
    "smoke",
)
if len(set(_NAMES)) != len(_NAMES):  # pragma: no cover - guards edits of the tuple above
    raise RuntimeError("a search space name is registered twice")


def available() -> list[str]:
    """Names of every registered search space, sorted."""
    return sorted(_NAMES)


def get(name: str) -> SearchSpace:
    """The search space registered as ``name``; an unknown name raises with the available ones listed."""
    if name not in _NAMES:
        close = difflib.get_close_matches(name, _NAMES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SearchSpaceError(f"unknown search space '{name}'.{hint} Available: {', '.join(available())}")
    module = importlib.import_module(f"search_spaces.{name}")
    return SearchSpace.from_module(name, module)
