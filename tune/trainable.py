"""The Tune trainable: one function that runs the engine epoch by epoch and reports with a checkpoint.

config (nested dict) -> :class:`ExperimentConfig` -> :class:`Engine` on the device Ray gave the trial,
restored from the trial's checkpoint when there is one -> epoch 0: the starting network's ``val`` and ``test``
scores (``eval.at_start``; computed once per sweep for trials that share the starting network, see
:mod:`tune.start_eval`), reported without a checkpoint and carried as ``start/...`` in every later report ->
per epoch: train, evaluate ``val`` (the objective),
evaluate ``test`` only when the validation objective improves (or every ``eval.test_every`` epochs); Recall@k
every epoch, the other metrics (k-means NMI/F1, MAP@R) only every ``eval.full_every`` epochs, at the ASHA rungs
and at the last epoch (:func:`full_eval_due`, the checkpoints' rule) ->
``tune.report``, with a checkpoint directory (engine state + ``tune_state.json``) every ``checkpoint_every``
epochs, at every ASHA rung and at the last epoch. Test metrics are reported and logged, never optimised:
``best/test/...`` are the test metrics at the epoch the validation objective selected. A trial whose
validation embeddings collapse (:mod:`dcml_core.collapse`) reports ``collapsed`` and ends: it is named as
collapsed, not scored.

Device: decided before any data is read (:mod:`tune.trial_device`): CUDA for a GPU share, or a clear failure
when CUDA cannot be used; threads, loader workers and faiss follow the trial's CPU share.

Failures: a restarted trial resumes from its newest usable checkpoint (older ones if the latest is corrupt);
a NaN/inf loss, an unusable GPU or an out-of-memory error on a whole GPU is not retried (see
:mod:`tune.trial_recovery`). On a shared GPU an out-of-memory error is retried in place (bounded, after a wait);
if it persists the trial fails over to Tune, which restarts it from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from dcml_core.checkpoint import CheckpointError
from dcml_core.collapse import COLLAPSED_KEY, collapse_message
from dcml_core.config import ExperimentConfig
from dcml_core.config.training import due
from dcml_core.device_info import describe_faiss, faiss_build
from dcml_core.engine import DeviceOutOfMemoryError, Engine
from dcml_core.metric_names import EPOCH, OBJECTIVE, OWN_TIME
from dcml_core.tracking import DEVICE_TAG, FAISS_TAG
from tune.start_eval import start_scores
from tune.trial_device import oom_retries, trial_device
from tune.trial_recovery import (
    DETERMINISTIC,
    SharedGpuOutOfMemoryError,
    checkpoint_candidates,
    raise_if_fatal,
    remember_fatal,
    restore_engine,
    trial_folder,
)

STATE_FILE = "tune_state.json"


def skip_ipython_in_trial_processes() -> None:
    """In a Ray actor (a trial process: Tune's actor imports this module before it builds the trainable), make
    ``import IPython`` fail as if IPython were not installed, unless the process already imported it.

    Ray's ``Trainable.__init__`` imports ``IPython.core.interactiveshell`` only to clear a notebook shell, which a
    trial process never has; that import cost 0.3 s of CPU before each new trial process could start (IPython
    comes with Jupyter). The driver is never affected (no actor; Ray not started when this module is imported)."""
    if "IPython" not in sys.modules and ray.is_initialized() and ray.get_runtime_context().get_actor_id():
        sys.modules["IPython"] = None  # Python's documented way to make an import fail


skip_ipython_in_trial_processes()


@dataclass
class BestSoFar:
    """The best validation objective of a trial, its epoch, and the metrics measured at that epoch; and the
    scores of its starting network (epoch 0, never a candidate for selection)."""

    value: float = float("-inf")
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # val/* and test/* at the best epoch
    start: dict[str, float] = field(default_factory=dict)  # val/* and test/* of the starting network

    def improves(self, value: float) -> bool:
        return value > self.value

    def as_report(self) -> dict[str, float]:
        """``best/epoch`` and ``best/<key>`` for every metric measured at the best epoch; ``start/<key>``."""
        best = {"best/epoch": self.epoch, **{f"best/{k}": v for k, v in self.metrics.items()}} if self.epoch else {}
        return {**best, **{f"start/{k}": v for k, v in self.start.items()}}

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, directory: Path) -> BestSoFar:
        path = directory / STATE_FILE
        if not path.exists():
            return cls()
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint file {path} is unreadable: {err}") from err


def trial_resources() -> tuple[int, float]:
    """(CPU threads, GPU share) that Ray gave this trial (Ray sets ``CUDA_VISIBLE_DEVICES`` to its GPU)."""
    resources = tune.get_context().get_trial_resources().required_resources
    return max(1, int(float(resources.get("CPU", 1)))), float(resources.get("GPU", 0))


def use_threads(cpus: int) -> None:
    """torch and faiss (OpenMP) threads: the trial's CPU share, never the node's cores."""
    from dcml_core.evaluation.faiss_lib import faiss

    torch.set_num_threads(cpus)
    faiss.omp_set_num_threads(cpus)


def checkpoint_due(epoch: int, cfg: ExperimentConfig, rungs: tuple[int, ...]) -> bool:
    """Whether the report after ``epoch`` carries a checkpoint: every ``checkpoint_every`` epochs, at an ASHA
    rung (where a stopped trial ends) and at the last epoch."""
    return due(epoch, cfg.checkpoint_every, cfg.schedule.n_epochs, rungs)


def full_eval_due(epoch: int, cfg: ExperimentConfig, rungs: tuple[int, ...]) -> bool:
    """Whether ``epoch`` evaluates every metric (else Recall@k only): every ``eval.full_every`` epochs, at an ASHA
    rung and at the last epoch, like the checkpoints."""
    return due(epoch, cfg.eval.full_every, cfg.schedule.n_epochs, rungs)


def device_tags(device: str, cpus: int, gpus: float) -> dict[str, str]:
    """What the trial computes on, reported with its results (tags of its MLflow run)."""
    where = f"cuda ({torch.cuda.get_device_name(0)}, {gpus:g} GPU)" if device == "cuda" else f"cpu ({cpus} threads)"
    return {DEVICE_TAG: where, FAISS_TAG: describe_faiss(faiss_build())}


def staging_root(min_free: int = 2 * 1024**3) -> str | None:
    """Where a checkpoint is written before Ray copies it to storage: ``$DCML_STAGING_DIR`` if set, else RAM
    (``/dev/shm``) when it has room, else the default temporary folder. RAM saves a disk write of the whole
    state every epoch, but counts against a job's memory limit (SLURM cgroups): set DCML_STAGING_DIR then."""
    if os.environ.get("DCML_STAGING_DIR"):
        return os.environ["DCML_STAGING_DIR"]
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= min_free:
            return str(shm)
    except OSError:
        pass
    return None


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.endswith("eval_time_s")}


def _primary(metrics: dict[str, float]) -> dict[str, float]:
    """The primary evaltype's scores (``val/recall_at_1``, not ``val/<evaltype>/recall_at_1``)."""
    return {k: v for k, v in _scores(metrics).items() if k.count("/") == 1}


def own_time(engine: Engine) -> float:
    """The trial's own training + evaluation seconds so far (an exact resume counts its checkpoint's)."""
    return engine.timings["train_s"] + engine.timings["eval_s"]


def quiet_worker() -> None:
    """Silence Ray's per-epoch "Checkpoint successfully created" lines (they drown the progress output)."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def dcml_trial(config: dict[str, Any], rungs: tuple[int, ...] = ()) -> None:
    """Train one configuration, reporting validation metrics every epoch and a checkpoint when
    :func:`checkpoint_due` (``rungs``: the epochs of the sweep's ASHA rungs)."""
    quiet_worker()
    folder = trial_folder()
    raise_if_fatal(folder)
    cpus, gpus = trial_resources()
    try:
        device = trial_device(gpus)  # before any data is read: never a silent CPU trial on a GPU share
        use_threads(cpus)
        retries, wait = oom_retries(gpus)
        options = {"cpus": cpus, "oom_retries": retries, "oom_wait_s": wait}
        tags = device_tags(device, cpus, gpus)
        _train(ExperimentConfig.from_dict(config), device, options, tuple(rungs), tags, folder)
    except DeviceOutOfMemoryError as err:
        err = DeviceOutOfMemoryError(f"{err}; this trial had {gpus:g} GPU (--gpus-per-trial {gpus:g})")
        if 0 < gpus < 1:  # maybe the neighbour's doing: Tune restarts the trial from its last checkpoint
            raise SharedGpuOutOfMemoryError(str(err)) from None
        remember_fatal(folder, err)
        raise err from None
    except DETERMINISTIC as err:
        remember_fatal(folder, err)
        raise


def _start(cfg: ExperimentConfig, device: str, options: dict[str, Any]) -> tuple[Engine, BestSoFar]:
    """A new engine, or the one restored from the trial's newest usable checkpoint."""
    checkpoint = tune.get_checkpoint()
    if not checkpoint:
        return Engine(cfg, device=device, **options), BestSoFar()
    return restore_engine(checkpoint_candidates(checkpoint), device, BestSoFar.load, options=options)


def _train(
    cfg: ExperimentConfig,
    device: str,
    options: dict[str, Any],
    rungs: tuple[int, ...],
    tags: dict[str, str],
    folder: tuple[Any, str],
) -> None:
    engine, best = _start(cfg, device, options)
    test_every = cfg.eval.test_every
    if cfg.eval.at_start and engine.epoch == 0:
        start = start_scores(engine, folder)
        best = dataclasses.replace(best, start=_primary(start))
        eval_s = sum(v for k, v in start.items() if k.endswith("/eval_time_s"))
        tune.report({**start, **best.as_report(), EPOCH: 0, "time/train_s": 0.0, "time/eval_s": eval_s,
                     OWN_TIME: own_time(engine), **tags})  # fmt: skip
    while engine.epoch < cfg.schedule.n_epochs:
        train = engine.train_epoch()
        metrics = cfg.eval.epoch_metrics(full_eval_due(engine.epoch, cfg, rungs))
        val = engine.evaluate("val", metrics)
        report = {**train, **val}
        improved = best.improves(val[OBJECTIVE])
        if improved or (test_every and engine.epoch % test_every == 0):
            test = engine.evaluate("test", metrics)
            report.update(test)
        if improved:
            best = BestSoFar(val[OBJECTIVE], engine.epoch, {**_scores(val), **_scores(test)}, best.start)
        collapsed = collapse_message(val, "val")
        if collapsed:
            report[COLLAPSED_KEY] = 1.0
            print(f"trial ends at epoch {engine.epoch}: {collapsed}", flush=True)
        report.update(best.as_report())
        report.update({
            EPOCH: engine.epoch,
            "time/train_s": train["train/epoch_time_s"],
            OWN_TIME: own_time(engine),
            "time/eval_s": sum(v for k, v in report.items() if k.endswith("/eval_time_s")),
            **tags,
        })  # fmt: skip
        if collapsed:
            tune.report(report)  # a collapsed network does not come back: no checkpoint, the trial ends
            return
        if not checkpoint_due(engine.epoch, cfg, rungs):
            tune.report(report)
            continue
        with tempfile.TemporaryDirectory(prefix="dcml_ckpt_", dir=staging_root()) as tmp:
            engine.save(tmp, durable=False)  # Ray copies it into the sweep's storage
            best.save(Path(tmp))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
