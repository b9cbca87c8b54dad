"""The Tune trainable: one function that runs the engine epoch by epoch and reports with a checkpoint.

config (nested dict) -> :class:`ExperimentConfig` -> :class:`Engine` on the device Ray gave the trial,
restored from the trial's checkpoint when there is one -> per epoch: train, evaluate ``val`` (the objective),
evaluate ``test`` only when the validation objective improves (or every ``eval.test_every`` epochs) ->
``tune.report`` with a checkpoint directory (engine state + ``tune_state.json``). Test metrics are reported
and logged, never optimised: ``best/test/...`` are the test metrics at the epoch the validation objective
selected.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from ray import tune

from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.metric_names import EPOCH, OBJECTIVE
from tune.cli import trial_config

STATE_FILE = "tune_state.json"


@dataclass
class BestSoFar:
    """The best validation objective of a trial, its epoch, and the metrics measured at that epoch."""

    value: float = float("-inf")
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # val/* and test/* at the best epoch

    def improves(self, value: float) -> bool:
        return value > self.value

    def as_report(self) -> dict[str, float]:
        """``best/epoch`` and ``best/<key>`` for every metric measured at the best epoch."""
        return {"best/epoch": self.epoch, **{f"best/{k}": v for k, v in self.metrics.items()}}

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, directory: Path) -> BestSoFar:
        path = directory / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else cls()


def trial_device() -> tuple[str, int]:
    """(device, threads) from the resources Ray gave this trial: CUDA only when it got a GPU share."""
    resources = tune.get_context().get_trial_resources().required_resources
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES
    return device, max(1, int(cpus))


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.endswith("eval_time_s")}


def quiet_worker() -> None:
    """Silence Ray's per-epoch "Checkpoint successfully created" lines (they drown the progress output)."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def dcml_trial(config: dict[str, Any]) -> None:
    """Train one configuration, reporting validation metrics and a checkpoint every epoch."""
    quiet_worker()
    cfg = ExperimentConfig.from_dict(trial_config(config))  # seed-repeat sweeps wrap the config
    device, threads = trial_device()
    torch.set_num_threads(threads)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            engine = Engine.restore(directory, device=device)
            best = BestSoFar.load(Path(directory))
    else:
        engine, best = Engine(cfg, device=device), BestSoFar()
    test_every = cfg.eval.test_every
    while engine.epoch < cfg.schedule.n_epochs:
        train = engine.train_epoch()
        val = engine.evaluate("val")
        report = {**train, **val}
        improved = best.improves(val[OBJECTIVE])
        if improved or (test_every and engine.epoch % test_every == 0):
            test = engine.evaluate("test")
            report.update(test)
        if improved:
            best = BestSoFar(val[OBJECTIVE], engine.epoch, {**_scores(val), **_scores(test)})
        report.update(best.as_report())
        report.update({
            EPOCH: engine.epoch,
            "time/train_s": train["train/epoch_time_s"],
            "time/eval_s": sum(v for k, v in report.items() if k.endswith("/eval_time_s")),
        })  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="dcml_ckpt_") as tmp:
            engine.save(tmp)
            best.save(Path(tmp))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
