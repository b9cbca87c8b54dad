"""Named search spaces for ``python tune/run.py --space NAME``: one module per space, found without a list.

A space is any module of this package that defines ``SPACE`` (a nested dict mirroring
:class:`dcml_core.config.ExperimentConfig`; values are ``ray.tune`` distributions or constants), ``METRIC`` and
``MODE`` (the objective), ``SCHEDULER`` (ASHA defaults: ``grace_period``, ``reduction_factor``, ``max_t``),
``DESCRIPTION`` and optionally ``DEFAULTS`` (``num_samples``, ``cpus_per_trial``, ``max_concurrent``); its name
is the module's. Adding a space is adding its module: :func:`available` and :func:`get` find it (helper modules
such as ``common`` define no ``SPACE`` and are skipped).

Example:
    >>> space = get("dcml_cub")
    >>> [cfg.model.compos_num for cfg in space.sample_configs(2, seed=0)]  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from types import ModuleType

from search_spaces.search_space import SearchSpace, SearchSpaceError, value_at

__all__ = ["SearchSpace", "SearchSpaceError", "available", "get", "value_at"]


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except Exception as err:  # a broken space module is named, whatever its error
        raise SearchSpaceError(f"search space module '{name}' cannot be imported: {err!r}") from err


def available() -> list[str]:
    """Names of every search space of the package (modules that define ``SPACE``), sorted."""
    names = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return sorted(name for name in names if hasattr(_module(name), "SPACE"))


def get(name: str) -> SearchSpace:
    """The search space ``name``; an unknown name raises with the available ones and a suggestion."""
    names = available()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SearchSpaceError(f"unknown search space '{name}'.{hint} Available: {', '.join(names)}")
    return SearchSpace.from_module(name, _module(name))
