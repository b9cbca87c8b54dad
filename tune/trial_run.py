"""What a trial's MLflow run holds: a name that carries its sampled values (``M8 K4 lr1.1e-4 tau55 (c3fbaa19)``),
its configuration as parameters, its tags and description (:func:`trial_run`); its per-epoch metrics and its end
(:class:`TrialLog`, what the writer has still to write)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from dcml_core import tracking as tr
from dcml_core.collapse import SPREAD, SPREAD_FLOOR
from dcml_core.config import ExperimentConfig
from dcml_core.metric_names import EPOCH, metric_key
from search_spaces import value_at
from tune.trial_outcome import COLLAPSED, COMPLETED, FAILED, STOPPED_EARLY

METRIC_PREFIXES = ("train/", "val/", "test/", "best/", "start/", "time/", "final/")
# Short names in run names: the papers' M and K of DCML, the DiVA weights without their prefix.
SYMBOLS = {"model.compos_num": "M", "model.ensemble_num": "K", "diva.alpha_ssl": "ssl", "diva.alpha_shared": "shared",
           "diva.alpha_intra": "intra", "diva.rho_decorrelation": "rho", "diva.moco_temperature": "T"}  # fmt: skip
FIRST = ("model.", "optim.", "schedule.")  # name order: model, optimiser, schedule, then the rest


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The finite training/evaluation values of a Tune result (Ray's bookkeeping keys left out)."""
    keys = [k for k in result if k == EPOCH or k.startswith(METRIC_PREFIXES)]
    return {k: float(result[k]) for k in keys if finite(result[k])}


def final_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The ``final/val/*`` metrics a finished trial's run gets from its last result."""
    values = metrics_of(result).items()
    return {f"final/{k}": v for k, v in values if k.startswith("val/") and "eval_time" not in k}


def _ms(result: dict[str, Any]) -> int:  # the time of a Ray result (its ``timestamp``), else now
    return int(float(result.get("timestamp") or time.time()) * 1000)


@dataclass
class TrialLog:
    """What MLflow should hold for one trial and does not yet: epochs, the end, a checkpoint to upload."""

    trial_id: str
    config: dict[str, Any]
    epochs: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # step, time ms, metrics
    end: tuple[str, dict[str, str], dict[str, float], int] | None = None  # status, tags, final metrics, ms
    checkpoint: str | None = None  # a directory to upload as the run's ``checkpoint/`` artifacts
    tags: dict[str, str] = field(default_factory=dict)  # reported by the trial: its device and faiss build

    def add(self, result: dict[str, Any]) -> None:
        """One Tune result; the first report of an epoch wins (a restored trial repeats epochs)."""
        self.tags.update({k: str(result[k]) for k in (tr.DEVICE_TAG, tr.FAISS_TAG) if k in result})
        if EPOCH in result and not (self.epochs and int(result[EPOCH]) <= self.epochs[-1][0]):
            self.epochs.append((int(result[EPOCH]), _ms(result), metrics_of(result)))

    def finish(self, how: str, last: dict[str, Any], error: str = "") -> None:
        """End the run as the trial ended (an outcome of :mod:`tune.trial_outcome`; ``last``: its last result):
        FINISHED with ``dcml.stopped_early``, FAILED with ``dcml.error`` (a collapse also with ``dcml.collapsed``,
        the epoch), or KILLED (unfinished)."""
        if how == COLLAPSED:
            epoch, spread = int(last.get(EPOCH, 0)), last.get(metric_key("val", SPREAD), float("nan"))
            reason = f"embeddings collapsed at epoch {epoch} (val embedding spread {spread:.2g} < {SPREAD_FLOOR})"
            self.end = ("FAILED", {tr.ERROR_TAG: reason, tr.COLLAPSED_TAG: str(epoch)}, {}, _ms(last))
        elif how in (COMPLETED, STOPPED_EARLY):
            stopped = {tr.STOPPED_TAG: str(how == STOPPED_EARLY).lower()}
            self.end = ("FINISHED", stopped, final_metrics(last), _ms(last))
        else:
            self.end = ("FAILED", {tr.ERROR_TAG: error}, {}, 0) if how == FAILED else ("KILLED", {}, {}, 0)


def short(value: Any) -> str:
    """2 significant digits, exponents unpadded (``1.1e-4``, ``0.46``, ``1.5e3``); lists joined by '/'."""
    if isinstance(value, (list, tuple)):
        return "/".join(short(v) for v in value)
    if not isinstance(value, float) or value == 0 or 1e-3 <= abs(value) < 1e3:
        return f"{value:.2g}" if isinstance(value, float) else str(value)
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def is_baseline(config: dict[str, Any], baseline: dict[str, Any]) -> bool:
    """True when ``config`` draws every sampled value of the space's ``baseline`` (its published configuration)."""
    return bool(baseline) and all(value_at(config, name) == value for name, value in baseline.items())


def trial_run(
    config: dict[str, Any],
    trial_id: str,
    sweep: str,
    sampled: tuple = (),
    repeat_of: str | None = None,
    baseline: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Name, parameters and tags of a trial's run.

    Parameters: ``ExperimentConfig.flat()`` (the same keys in every space; a config that does not parse is
    recorded as ``raw_config``, the trial fails on it). Tags: sweep, role, Ray's trial id, the sampled names
    (``dcml.sampled``), the seed-free ``dcml.config_id``, ``dcml.repeat_of`` in a seed-repeat sweep (whose run
    names also carry the seed), ``dcml.baseline`` on the space's published configuration (whose run name starts
    with "baseline"), and a description with the sampled values in full.
    """
    tags = {tr.SWEEP_TAG: sweep, tr.ROLE_TAG: tr.TRIAL_ROLE, tr.TRIAL_TAG: trial_id, tr.SAMPLED_TAG: ",".join(sampled)}
    try:
        params = ExperimentConfig.from_dict(config).flat()
        tags[tr.CONFIG_TAG] = tr.config_id(params)
    except ValueError:
        params = {"raw_config": config}
    ordered = sorted(sampled, key=lambda name: next((i for i, p in enumerate(FIRST) if name.startswith(p)), 3))
    parts = [f"{SYMBOLS.get(n, n.rsplit('.', 1)[-1])}{short(value_at(config, n))}" for n in ordered]
    if repeat_of:
        tags[tr.REPEAT_TAG] = repeat_of
        parts.append(f"seed{config.get('seed')}")
    if is_baseline(config, baseline or {}):
        tags[tr.BASELINE_TAG] = "true"
        parts.insert(0, "baseline")
    lines = [f"Trial `{trial_id}` of sweep `{sweep}`.", "", "Sampled parameters:"]
    tags[tr.NOTE_TAG] = "\n".join([*lines, *(f"* `{n}` = `{value_at(config, n)!r}`" for n in sampled)])
    return " ".join([*parts, f"({trial_id})"]), params, tags
