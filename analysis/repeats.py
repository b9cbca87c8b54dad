"""Seed repeats of a finished sweep: its best configurations, one full-length config per (config, seed).

Used by ``python tune/run.py --repeat-top-k K --seeds N --from NAME``: :func:`top_k_configs` reads the
finished sweep from MLflow, :func:`repeat_configs` expands the configurations over seeds, and
:func:`repeat_tags` gives the tags that link each run of the repeat sweep to the original and to its
configuration (``dcml.repeat_of``, ``dcml.config_id``), by which the report groups runs over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.mlflow_io import load_sweep
from analysis.params import canonical_flat, config_id, nested
from analysis.trials import CONFIG_TAG, REPEAT_TAG
from dcml_core.config import ExperimentConfig
from dcml_core.metric_names import OBJECTIVE


def top_k_configs(
    tracking_uri: str | None, experiment: str, k: int, mode: str = "max"
) -> list[dict[str, Any]]:
    """The ``k`` best distinct configurations of a sweep, ranked by best validation objective.

    Only finished trials count (early-stopped ones included). Configurations that ran several times (same
    ``config_id``) are ranked by their mean and returned once, from their best run. Each item is the
    validated nested dict of ``ExperimentConfig.to_dict()``, rebuilt from the run's MLflow params. Fewer than
    ``k`` items come back when the sweep has fewer finished configurations.
    """
    if k < 1:
        raise ValueError(f"k must be a positive number of configurations, got {k}")
    sweep = load_sweep(experiment, tracking_uri, keys=[OBJECTIVE], mode=mode)
    trials = sweep.trials
    done = trials[(trials["status"] == "FINISHED") & np.isfinite(trials["objective"].astype(float))]
    if done.empty:
        raise ValueError(
            f"sweep '{experiment}' has no finished trial with a value of {OBJECTIVE}; nothing to repeat"
        )
    means = (
        done.groupby("config_id")["objective"].mean().sort_values(ascending=(mode == "min"), kind="stable")
    )
    runs = sweep.runs.set_index("run_id")
    out = []
    for cid in means.index[:k]:
        group = done[done["config_id"] == cid]
        best = group.loc[group["objective"].idxmax() if mode == "max" else group["objective"].idxmin()]
        params = {
            c[len("params.") :]: v
            for c, v in runs.loc[best["run_id"]].items()
            if c.startswith("params.") and isinstance(v, str)
        }
        out.append(config_from_params(params))
    return out


def config_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validated nested configuration dict from flat MLflow params (text values parsed by their types)."""
    flat = canonical_flat(params)
    if not flat:
        raise ValueError(
            f"no configuration parameters among {sorted(params)[:8]}...; cannot rebuild the config"
        )
    return ExperimentConfig.from_dict(nested(flat)).to_dict()


def repeat_configs(
    configs: Sequence[Mapping[str, Any]], seeds: Sequence[int], n_epochs: int | None = None
) -> list[dict[str, Any]]:
    """One validated nested config per (configuration, seed), in that order, with ``seed`` replaced.

    Runs are full length: ``schedule.n_epochs`` stays as configured (early stopping in the original sweep is a
    scheduler decision, not part of the config) unless ``n_epochs`` overrides it.
    """
    if not configs:
        raise ValueError("no configurations to repeat")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds given; pass e.g. seeds=[1, 2, 3]")
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in seeds):
        raise ValueError(f"seeds must be integers, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if n_epochs is not None and n_epochs < 1:
        raise ValueError(f"n_epochs must be a positive integer, got {n_epochs}")
    out = []
    for config in configs:
        base = ExperimentConfig.from_dict(dict(config))
        for seed in seeds:
            changes: dict[str, Any] = {"seed": int(seed)}
            if n_epochs is not None:
                changes["schedule"] = {"n_epochs": n_epochs}
            out.append(base.replace(**changes).to_dict())
    return out


def repeat_tags(original_sweep: str, config: Mapping[str, Any]) -> dict[str, str]:
    """Tags of a repeat run: ``dcml.repeat_of`` (the original sweep) and ``dcml.config_id`` (seed-free id)."""
    return {REPEAT_TAG: original_sweep, CONFIG_TAG: config_id(config)}
