"""Named registries of the pluggable parts: losses, miners, embedding heads and evaluation metrics.

timm-style, stricter: ``@LOSSES.register("margin")`` registers a builder under a name; registering a name
twice raises; ``LOSSES.build("margin", **kwargs)`` drops ``None`` arguments (so unset options keep the
builder's defaults) and an unknown name raises :class:`RegistryError` with a did-you-mean suggestion and the
available names. Names are matched exactly. Registration order is kept: it is the order in which the
objective sums its head terms and evaluation reports its metrics.

Each registry imports the module that registers its built-in entries on first use, so ``available()`` always
lists them, whoever asked first. This module imports neither torch nor numpy: the analysis side can read the
metric registry without loading the training stack.

Example:
    >>> from dcml_core.config import MinerConfig
    >>> from dcml_core.registry import MINERS
    >>> MINERS.build("distance", cfg=MinerConfig())  # doctest: +ELLIPSIS
    <dcml_core.miners.distance_weighted.DistanceWeightedMiner object at ...>
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["HEADS", "LOSSES", "METRICS", "MINERS", "Registry", "RegistryError"]

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown or duplicate registry name; the message says what is available."""


class Registry(Generic[T]):
    """Names -> builders (classes or functions) of one kind of part.

    Args:
        kind: what is registered, for messages ("loss", "miner", ...).
        builtins: module that registers the built-in entries; imported the first time the registry is used.
    """

    def __init__(self, kind: str, builtins: str | None = None) -> None:
        self.kind = kind
        self._builtins = builtins
        self._loaded = builtins is None
        self._entries: dict[str, T] = {}

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before the import: the module registers through this registry
        try:
            importlib.import_module(self._builtins)
        except BaseException:
            self._loaded = False
            raise

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a name registered before raises RegistryError."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        self._load_builtins()

        def decorator(obj: T) -> T:
            if name in self._entries:
                where = getattr(self._entries[name], "__module__", "?")
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered (by {where}); choose another name or "
                    f"unregister the existing one first"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove and return an entry (tests and plugins that replace one); unknown names raise."""
        self.get(name)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The registered builder; an unknown name raises RegistryError with a suggestion."""
        self._load_builtins()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the builder registered under ``name`` with the keyword arguments that are not None."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})

    def available(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        self._load_builtins()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def unknown_message(self, name: object) -> str:
        """``unknown loss 'marign' (did you mean 'margin'?); available: margin``."""
        names = self.available()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; available: {', '.join(names) or '(none registered)'}"


# Builders take keyword arguments only; see each package's docstring for the signature it expects.
LOSSES: Registry[Callable[..., Any]] = Registry("loss", builtins="dcml_core.losses")
MINERS: Registry[Callable[..., Any]] = Registry("miner", builtins="dcml_core.miners")
HEADS: Registry[Any] = Registry("head", builtins="dcml_core.objective")
METRICS: Registry[Any] = Registry("metric", builtins="dcml_core.metrics")
