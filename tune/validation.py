"""Checks a sweep's configurations and data before Ray starts, and prints them for ``--dry-run``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dcml_core.config import ExperimentConfig
from dcml_core.data_bundle import DataBundle, prepare_data
from dcml_core.evaluation import expand_evaltypes
from dcml_core.models.backbones import parse_arch, resolve_weights
from search_spaces import SearchSpace, value_at


@dataclass
class ValidationReport:
    """Sampled configurations that passed every check, and what was found in the data."""

    samples: list[dict[str, Any]]
    configs: list[ExperimentConfig]
    data: dict[str, Any]

    def text(self, space: SearchSpace, seed: int) -> str:
        """The ``--dry-run`` output: settings, a table of the sampled values, the first full configuration."""
        names = list(space.distributions())
        rows = [[str(i + 1), *[_fmt(value_at(s, n)) for n in names]] for i, s in enumerate(self.samples)]
        header = ["#", *[n.split(".")[-1] for n in names]]
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
        table = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
        lines = [
            f"Search space '{space.name}': {space.description}",
            f"Objective: {space.metric} ({space.mode}); {space.n_epochs} epochs per trial; "
            f"ASHA {space.scheduler}",
            f"Data: {json.dumps(self.data)}",
            f"{len(self.samples)} configurations sampled at random (seed {seed}; the sweep's searcher draws "
            "its own):",
            *table,
            "",
            "First configuration in full:",
            self.configs[0].to_json(),
            f"All {len(self.configs)} configurations are valid.",
        ]
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def check_config(cfg: ExperimentConfig) -> None:
    """What the configuration tree cannot check alone: evaltypes against heads, pretrained weights on disk."""
    expand_evaltypes(cfg.eval.evaltypes, cfg.model.features, cfg.data.dataset)
    try:
        resolve_weights(parse_arch(cfg.model.arch).backbone, cfg.model.resolved_pretrained(cfg.data.dataset))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err} For sweeps: put the file into $TORCH_HOME/hub/checkpoints on every node, or set "
            "model.pretrained in the search space"
        ) from None


def check_data(cfg: ExperimentConfig) -> DataBundle:
    """Load and check the data set of a configuration (builds the demo set on first use)."""
    bundle = prepare_data(cfg)
    if not bundle.val:
        raise ValueError(
            f"the validation split of {cfg.data.dataset} is empty "
            f"(data.val_fraction={cfg.data.val_fraction}); "
            "sweeps optimise validation Recall@1 and need held-out training classes"
        )
    return bundle


def validate_configs(configs: Iterable[dict[str, Any]]) -> tuple[list[ExperimentConfig], dict[str, Any]]:
    """Build and check each configuration, and the data of every distinct data setting; returns the
    configurations and what was found in the (first) data set."""
    built = [ExperimentConfig.from_dict(c) for c in configs]
    bundles = {}
    for cfg in built:
        if cfg.data not in bundles:
            bundles[cfg.data] = check_data(cfg)
        check_config(cfg)
    return built, next(iter(bundles.values())).summary()


def validate_space(space: SearchSpace, n: int, seed: int) -> ValidationReport:
    """Sample ``n`` configurations of a space and check them (:func:`validate_configs`)."""
    samples = space.sample(n, seed)
    return ValidationReport(samples, *validate_configs(samples))
