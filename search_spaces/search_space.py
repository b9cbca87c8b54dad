"""One named search space: its distributions, objective and scheduler defaults, and how to sample it."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
from ray.tune.search.sample import Domain, Function

from dcml_core.config import ExperimentConfig
from search_spaces.baseline import baseline_of

SCHEDULER_KEYS = ("grace_period", "reduction_factor", "max_t")
DEFAULT_SETTINGS = {"num_samples": 16, "cpus_per_trial": 4, "max_concurrent": None}


class SearchSpaceError(ValueError):
    """A search space is unknown or malformed; the message names the space and the problem."""


@dataclass(frozen=True)
class SearchSpace:
    """A named search space (see ``search_spaces/__init__.py`` for the module contract)."""

    name: str
    space: dict[str, Any]
    metric: str
    mode: str
    scheduler: dict[str, int]
    description: str
    defaults: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    source: str = ""  # the file of its module, named in error messages
    baseline: dict[str, Any] = field(default_factory=dict)  # sampled name -> published value (trial 1)

    @classmethod
    def from_module(cls, name: str, module: ModuleType) -> SearchSpace:
        """Read and check the exports of a space module."""
        missing = [
            a for a in ("SPACE", "METRIC", "MODE", "SCHEDULER", "DESCRIPTION") if not hasattr(module, a)
        ]
        if missing:
            raise SearchSpaceError(f"search space '{name}' ({module.__file__}) does not define {missing}")
        defaults = {**DEFAULT_SETTINGS, **getattr(module, "DEFAULTS", {})}
        unknown = sorted(set(defaults) - set(DEFAULT_SETTINGS))
        if unknown:
            raise SearchSpaceError(
                f"search space '{name}': unknown DEFAULTS keys {unknown}; allowed {list(DEFAULT_SETTINGS)}"
            )
        out = cls(
            name,
            copy.deepcopy(module.SPACE),
            module.METRIC,
            module.MODE,
            dict(module.SCHEDULER),
            module.DESCRIPTION.strip(),
            defaults,
            str(getattr(module, "__file__", "") or ""),
        )
        out.check()
        return dataclasses.replace(out, baseline=baseline_of(name, out.distributions(), getattr(module, "BASELINE", None)))

    def check(self) -> None:
        """Raise :class:`SearchSpaceError` if objective, epochs or scheduler settings are inconsistent."""
        if self.mode not in ("min", "max"):
            raise SearchSpaceError(
                f"search space '{self.name}': MODE must be 'min' or 'max', not {self.mode!r}"
            )
        if sorted(self.scheduler) != sorted(SCHEDULER_KEYS):
            raise SearchSpaceError(
                f"search space '{self.name}': SCHEDULER needs exactly the keys {list(SCHEDULER_KEYS)}"
            )
        n_epochs = self.space.get("schedule", {}).get("n_epochs")
        if not isinstance(n_epochs, int) or isinstance(n_epochs, bool):
            raise SearchSpaceError(
                f"search space '{self.name}': schedule.n_epochs must be a constant integer (ASHA's max_t), "
                f"got {n_epochs!r}"
            )
        grace, rf, max_t = (self.scheduler[k] for k in SCHEDULER_KEYS)
        if max_t != n_epochs:
            raise SearchSpaceError(
                f"search space '{self.name}': SCHEDULER max_t ({max_t}) != schedule.n_epochs ({n_epochs})"
            )
        if not (0 < grace <= max_t and rf > 1):
            raise SearchSpaceError(
                f"search space '{self.name}': need 0 < grace_period ({grace}) <= max_t ({max_t}) and "
                f"reduction_factor ({rf}) > 1"
            )

    # ------------------------------------------------------------------ derived spaces
    @property
    def n_epochs(self) -> int:
        """Epochs of every trial (ASHA's ``max_t``)."""
        return int(self.space["schedule"]["n_epochs"])

    def with_overrides(self, data_root: str | None = None, max_epochs: int | None = None) -> SearchSpace:
        """A copy with ``data.root`` and/or the epochs replaced (rungs moved inside the new budget)."""
        space = copy.deepcopy(self.space)
        scheduler = dict(self.scheduler)
        if data_root is not None:
            space.setdefault("data", {})["root"] = str(data_root)
        if max_epochs is not None:
            if max_epochs < 1:
                raise SearchSpaceError(f"--max-epochs must be >= 1, got {max_epochs}")
            space["schedule"]["n_epochs"] = int(max_epochs)
            scheduler["max_t"] = int(max_epochs)
            if scheduler["grace_period"] > max_epochs:
                scheduler["grace_period"] = max(1, max_epochs // scheduler["reduction_factor"])
        return dataclasses.replace(self, space=space, scheduler=scheduler)

    # ------------------------------------------------------------------ sampling
    def distributions(self) -> dict[str, Domain]:
        """``{"model.compos_num": <Categorical>, ...}``: the sampled parameters with dotted names."""
        return {k: v for k, v in _flatten(self.space).items() if isinstance(v, Domain)}

    def constants(self) -> dict[str, Any]:
        """The fixed settings with dotted names."""
        return {k: v for k, v in _flatten(self.space).items() if not isinstance(v, Domain)}

    def sample(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """``n`` nested configuration dicts drawn independently (numpy RNG seeded with ``seed``)."""
        rng = np.random.RandomState(seed)
        return [_resolve(self.space, rng, path=self.name) for _ in range(n)]

    def baseline_config(self) -> dict[str, Any]:
        """The nested configuration of the baseline trial (the published configuration, see :attr:`baseline`)."""
        config = _resolve(self.space, np.random.RandomState(0), path=self.name)
        for dotted, value in self.baseline.items():
            *parents, leaf = dotted.split(".")
            node = config
            for part in parents:
                node = node[part]
            node[leaf] = value
        return config

    def build_config(self, sample: dict[str, Any]) -> ExperimentConfig:
        """The validated :class:`ExperimentConfig` of one sample (``ConfigError`` on a bad key or value)."""
        return ExperimentConfig.from_dict(sample)

    def sample_configs(self, n: int, seed: int = 0) -> list[ExperimentConfig]:
        """``n`` sampled and validated configurations."""
        return [self.build_config(s) for s in self.sample(n, seed)]


def value_at(tree: dict[str, Any], dotted: str) -> Any:
    """``tree["model"]["compos_num"]`` for ``model.compos_num`` (None when missing)."""
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _resolve(value: Any, rng: np.random.RandomState, path: str) -> Any:
    """Replace every distribution in a nested structure by one draw, converting numpy scalars to Python."""
    if isinstance(value, Domain):
        if isinstance(value, Function):
            raise SearchSpaceError(
                f"{path}: tune.sample_from is not supported in search spaces; use a distribution"
            )
        drawn = value.sample(random_state=rng)
        return drawn.item() if isinstance(drawn, np.generic) else drawn
    if isinstance(value, dict):
        return {k: _resolve(v, rng, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(v, rng, path) for v in value]
    return value
