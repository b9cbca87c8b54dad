"""Building the Tuner of a sweep (searcher, scheduler, resources, storage) or restoring it after a crash."""

from __future__ import annotations

from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from dcml_core.metric_names import EPOCH
from search_spaces import SearchSpace
from tune.cli import REPEAT_KEY, SweepSettings
from tune.optuna_search import PrunedAwareOptunaSearch, study_storage
from tune.trainable import dcml_trial

OPTUNA_DB = "optuna.db"
CHECKPOINTS_PER_TRIAL = 2
MAX_FAILURES = 2


def asha_rungs(scheduler: dict[str, int]) -> list[int]:
    """Epochs at which ASHA compares trials: grace * rf**k below max_t."""
    rungs, epoch = [], scheduler["grace_period"]
    while epoch < scheduler["max_t"]:
        rungs.append(epoch)
        epoch *= scheduler["reduction_factor"]
    return rungs


def build_scheduler(settings: SweepSettings, space: SearchSpace) -> TrialScheduler:
    """ASHA on epochs with the space's grace period and reduction factor, or FIFO (no early stopping)."""
    if settings.scheduler == "fifo":
        return FIFOScheduler()
    s = space.scheduler
    return ASHAScheduler(
        time_attr=EPOCH,
        max_t=s["max_t"],
        grace_period=s["grace_period"],
        reduction_factor=s["reduction_factor"],
    )


def build_searcher(settings: SweepSettings, space: SearchSpace) -> Any:
    """Seeded Optuna TPE with its study in ``<state dir>/optuna.db``, or seeded random search."""
    if settings.search == "random":
        return BasicVariantGenerator(max_concurrent=settings.max_concurrent or 0, random_state=settings.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return PrunedAwareOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        storage=study_storage(str(settings.state_dir / OPTUNA_DB)),
        study_name=settings.name,
        max_t=space.n_epochs,
    )


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Ray's default packs the parameters into the name)."""
    return f"trial_{trial.trial_id}"


def trainable(cpus: float, gpus: float) -> Any:
    """The trainable with its per-trial resources."""
    return tune.with_resources(dcml_trial, {"cpu": cpus, "gpu": gpus})


def new_tuner(
    settings: SweepSettings,
    space: SearchSpace,
    cpus: float,
    gpus: float,
    callbacks: list,
    repeats: list[dict[str, Any]] | None = None,
) -> tune.Tuner:
    """A fresh Tuner for the sweep; with ``repeats`` a FIFO grid over those full configurations, one trial each."""
    if repeats is not None:
        param_space: dict[str, Any] = {REPEAT_KEY: tune.grid_search(repeats)}
        searcher = BasicVariantGenerator(max_concurrent=settings.max_concurrent or 0)
        num_samples = 1
    else:
        param_space, searcher = space.space, build_searcher(settings, space)
        num_samples = settings.num_samples
    return tune.Tuner(
        trainable(cpus, gpus),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            num_samples=num_samples,
            max_concurrent_trials=None if settings.search in ("random", "grid") else settings.max_concurrent,
            # A finished or stopped trial's worker process runs the next trial (same resources): saves
            # a process start + torch/ray imports per trial (6-14 s on a loaded 2-core machine). The
            # engine seeds every RNG when it is built: a reused process trains exactly as a fresh one
            # (measured: benchmarks/bench_sweep_overhead.py).
            reuse_actors=True,
            search_alg=searcher,
            scheduler=build_scheduler(settings, space),
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.storage,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=CHECKPOINTS_PER_TRIAL,
                checkpoint_score_attribute=space.metric,
                checkpoint_score_order=space.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def restore_tuner(settings: SweepSettings, cpus: float, gpus: float) -> tune.Tuner:
    """The Tuner of a sweep whose driver stopped: finished trials kept, unfinished ones resumed, searcher
    restored.

    Callbacks, searcher and scheduler come back from the sweep folder (Tune pickled them there).
    """
    return tune.Tuner.restore(
        settings.sweep_path,
        trainable=trainable(cpus, gpus),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
