"""Seed repeats: the best configurations of a finished sweep, read from MLflow, each re-run with seeds 0..N-1.

:func:`top_k_configs` ranks the sweep's finished trials (early-stopped ones included) by their best validation
objective (the trainable's ``best/val/recall_at_1``), :func:`repeat_configs` expands the configurations over
the seeds, and :class:`FixedConfigs` is the Tune searcher that hands them out, one trial each.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from dcml_core import tracking as tr
from dcml_core.config import ExperimentConfig
from dcml_core.metric_names import OBJECTIVE
from tune.cli import UsageError
from tune.trial_run import finite

BEST = f"best/{OBJECTIVE}"


def config_from_params(params: dict[str, str]) -> ExperimentConfig:
    """The configuration a run's MLflow params hold (other params, e.g. ``data_info.*``, are ignored)."""
    groups = {f.name for f in dataclasses.fields(ExperimentConfig)}
    nested: dict[str, Any] = {}
    for key, text in params.items():
        group, _, name = key.rpartition(".")
        if (group or name) in groups:
            (nested.setdefault(group, {}) if group else nested)[name] = tr.param_from_text(text)
    return ExperimentConfig.from_dict(nested)


def top_k_configs(tracking_uri: str, sweep: str, k: int, with_baseline: bool = True) -> list[dict[str, Any]]:
    """The ``k`` best distinct configurations of a finished sweep (nested dicts), best first, then (with
    ``with_baseline``) the sweep's baseline trial's configuration when it is not among them: repeating it too
    gives "what did tuning gain over the published setting?" a confidence interval.

    A configuration that ran several times (same seed-free id, e.g. in an earlier repeat sweep) is ranked by
    its mean and returned once, from its best run. Fewer come back when the sweep has fewer.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(sweep)
    if exp is None or exp.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise UsageError(
            f"--from {sweep}: no such sweep in the MLflow store {tracking_uri}; available: "
            f"{', '.join(names) or 'none'} (check --from and --mlflow-uri)"
        )
    query = f"tags.`{tr.ROLE_TAG}` = '{tr.TRIAL_ROLE}' and attributes.status = 'FINISHED'"
    runs: dict[str, list[tuple[float, ExperimentConfig]]] = defaultdict(list)
    for run in client.search_runs([exp.experiment_id], query, max_results=50000):
        if finite(run.data.metrics.get(BEST)):
            cfg = config_from_params(run.data.params)
            runs[tr.config_id(cfg.flat())].append((run.data.metrics[BEST], cfg))
    if not runs:
        raise UsageError(f"--from {sweep}: the sweep has no finished trial with a value of {BEST}; nothing to repeat")
    ranked = sorted(runs.values(), key=lambda group: -statistics.fmean(v for v, _ in group))
    best = [max(group, key=lambda item: item[0])[1] for group in ranked[:k]]
    query = f"tags.`{tr.ROLE_TAG}` = '{tr.TRIAL_ROLE}' and tags.`{tr.BASELINE_TAG}` = 'true'"
    baselines = client.search_runs([exp.experiment_id], query, max_results=1) if with_baseline else []
    chosen = {tr.config_id(cfg.flat()) for cfg in best}
    for run in baselines:
        cfg = config_from_params(run.data.params)
        if tr.config_id(cfg.flat()) not in chosen:
            best.append(cfg)
    return [cfg.to_dict() for cfg in best]


def repeat_configs(
    configs: list[dict[str, Any]], seeds: range, n_epochs: int | None = None, data_root: str | None = None
) -> list[dict[str, Any]]:
    """One validated configuration per (configuration, seed), in that order, with ``seed`` replaced; runs are
    full length (early stopping was the original's scheduler, not the configuration) unless ``n_epochs``."""
    out = []
    for config in configs:
        base = ExperimentConfig.from_dict(config)
        changes: dict[str, Any] = {"schedule": {"n_epochs": n_epochs}} if n_epochs else {}
        if data_root is not None:
            changes["data"] = {"root": data_root}
        out += [base.replace(seed=seed, **changes).to_dict() for seed in seeds]
    return out


class FixedConfigs(Searcher):
    """A Tune searcher that hands out the given configurations in order, one trial each (no search)."""

    def __init__(self, configs: list[dict[str, Any]], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configs, self.given = list(configs), 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return copy.deepcopy(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing to learn

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"configs": self.configs, "given": self.given}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.configs, self.given = state["configs"], state["given"]
