"""Frozen, typed experiment configuration built once from a nested dict.

One tree describes a run: ``data``, ``model``, ``loss``, ``diva``, ``miner``, ``optim``, ``schedule``,
``eval`` and top-level run settings (``seed``, ``device``...). The original command-line flags
(``dcml_core/train.py``), the search spaces (``search_spaces/``) and the checkpoints all map onto this tree,
each in one place. Defaults are the reference defaults of algorithms.md unless a docstring says otherwise.
Names that select parts (``loss.name``, ``miner.name``, ``model.features``, ``eval.metrics``) are checked
against the registries of :mod:`dcml_core.registry`.

Example:
    >>> cfg = ExperimentConfig.from_dict({"data": {"dataset": "demo"}, "model": {"method": "dcml"}})
    >>> cfg.model.compos_num
    4
"""

from dcml_core.config.coerce import ConfigError
from dcml_core.config.data import DataConfig
from dcml_core.config.experiment import ExperimentConfig
from dcml_core.config.model import ModelConfig
from dcml_core.config.objective import DivaConfig, LossConfig, MinerConfig
from dcml_core.config.training import EvalConfig, OptimConfig, ScheduleConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "DivaConfig",
    "MinerConfig",
    "OptimConfig",
    "ScheduleConfig",
    "EvalConfig",
    "ExperimentConfig",
]
