"""The Tuner of a sweep (trainable with its resources, the plan's searcher and scheduler, storage,
checkpoints, retries), or the one restored after the driver stopped."""

from __future__ import annotations

from typing import Any

from ray import tune

from tune.plan import SweepPlan
from tune.trainable import dcml_trial

CHECKPOINTS_PER_TRIAL = 2
MAX_FAILURES = 2


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Ray's default packs the parameters into the name)."""
    return f"trial_{trial.trial_id}"


def trainable(cpus: float, gpus: float, rungs: list[int]) -> Any:
    """The trainable with its per-trial resources and the epochs of the ASHA rungs (it checkpoints there)."""
    return tune.with_resources(tune.with_parameters(dcml_trial, rungs=tuple(rungs)), {"cpu": cpus, "gpu": gpus})


def new_tuner(plan: SweepPlan, cpus: float, gpus: float, callbacks: list) -> tune.Tuner:
    """A fresh Tuner for the sweep's plan."""
    s, space = plan.settings, plan.space
    return tune.Tuner(
        trainable(cpus, gpus, plan.rungs()),
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            num_samples=s.num_samples,
            max_concurrent_trials=None if s.search == "random" else s.max_concurrent,  # random: its own limit
            # On CPUs a finished or stopped trial's worker process runs the next trial (same resources):
            # saves a process start + torch/ray imports per trial (6-14 s on a loaded 2-core machine). The
            # engine seeds every RNG when it is built: a reused process trains exactly as a fresh one
            # (measured: benchmarks/bench_sweep_overhead.py). Never with GPUs: a reused process keeps the
            # previous trial's CUDA context, cached memory and faiss GPU resources (ecosystem.md §1.5).
            reuse_actors=gpus == 0,
            search_alg=plan.searcher(),
            scheduler=plan.scheduler(),
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=s.storage,
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


def restore_tuner(plan: SweepPlan, cpus: float, gpus: float) -> tune.Tuner:
    """The Tuner of a sweep whose driver stopped: finished trials kept, unfinished ones resumed, searcher
    restored. Callbacks, searcher and scheduler come back from the sweep folder (Tune pickled them there)."""
    return tune.Tuner.restore(
        plan.settings.sweep_path,
        trainable=trainable(cpus, gpus, plan.rungs()),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
