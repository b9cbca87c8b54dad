"""The part of ``tune/run.py`` that needs Ray: start or join it, open the MLflow sweep, fit, summarise."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from dcml_core.tracking import REPEAT_TAG, TrackingError, system_tags, ui_command
from tune.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tune.cluster import (
    ClusterError,
    alive_nodes,
    check_resources,
    check_tracking_for_cluster,
    default_gpus_per_trial,
    start_ray,
    trial_slots,
)
from tune.cluster_check import check_cluster
from tune.plan import SweepPlan
from tune.progress import BusyTime, ProgressCallback
from tune.store_warmup import StoreWarmUp
from tune.summary import busy_seconds, command_start, ranked, records_from_results, summary_text
from tune.trial_outcome import UNFINISHED
from tune.trial_run import TrialLog
from tune.tuner import new_tuner, restore_tuner

TOP_K_ARTIFACTS = 3


def sweep_params(plan: SweepPlan, gpus: float) -> dict[str, Any]:
    """Parameters of the parent run."""
    settings, space = plan.settings, plan.space
    params: dict[str, Any] = {
        **{k: v for k, v in settings.to_json().items() if k not in ("mlflow_uri", "search")},
        "searcher": settings.search,
        "gpus_per_trial": gpus,
        "max_epochs": plan.n_epochs,
        "sampled_params": ",".join(space.distributions()),
        "metric": space.metric,
        "mode": space.mode,
    }
    if plan.rungs():
        params.update({f"asha.{k}": v for k, v in space.scheduler.items()})
    return params


def announce(plan: SweepPlan, cpus: float, gpus: float) -> None:
    s, rungs = plan.settings, plan.rungs()
    at_once = s.max_concurrent or "as resources allow"
    lines = [
        f"Sweep '{s.name}' ({'resumed' if s.resume else 'new'}): space {s.space}, {s.num_samples} trials x "
        f"{plan.n_epochs} epochs, searcher {s.search} (seed {s.seed}), scheduler {s.scheduler}"
        + (f" (rungs at epochs {rungs})" if rungs else ""),
        f"  per trial {cpus:g} CPU, {gpus:g} GPU; at most {at_once} at once; {len(alive_nodes())} node(s)",
        f"  storage {s.sweep_path}",
        f"  MLflow {s.mlflow_uri} (experiment '{s.name}')",
    ]
    print("\n".join(lines), flush=True)


def on_ray(address: str | None, body: Callable[[], int]) -> int:
    """Start or join Ray, return ``body()``; a cluster or tracking problem prints one line (exit code 2)."""
    start_ray(address)
    try:
        return body()
    except (ClusterError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        ray.shutdown()


def checked_gpus(plan: SweepPlan, smoke: bool = False) -> float:
    """The checks that need the cluster, before any trial: MLflow for several nodes, resources for one trial,
    every node (:func:`tune.cluster_check.check_cluster`); returns the GPUs per trial."""
    settings = plan.settings
    check_tracking_for_cluster(settings.mlflow_uri)
    gpus = settings.gpus_per_trial if settings.gpus_per_trial is not None else default_gpus_per_trial()
    check_resources(settings.cpus_per_trial, gpus)
    check_cluster(plan, gpus, smoke=smoke)  # CUDA for the GPU share, faiss, data, weights, shared storage
    return gpus


def check_only(plan: SweepPlan) -> int:
    """``--check-cluster``: check every node (with a GPU matrix product), print the table; exit code 0 when the
    cluster can run the sweep, 2 when not. Writes nothing."""

    def check() -> int:
        gpus = checked_gpus(plan, smoke=True)
        print(f"The cluster can run sweeps of space {plan.settings.space} with {gpus:g} GPU per trial.", flush=True)
        return EXIT_OK

    return on_ray(plan.settings.address, check)


def run_sweep(plan: SweepPlan, command: str, store: StoreWarmUp | None = None) -> int:
    """Start or join Ray, run (or resume) the planned sweep, print the summary; returns the exit code. ``store``:
    the warm-up of the sweep's MLflow store if one was started (``tune/run.py``), else one starts now."""
    # MLflow prints a "View run at" line per run it ends on a server; the summary prints the UI command
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Ray's default console output prints, even at verbose=0, a box of the Tuner's settings and a TensorBoard
    # command for a staging folder under /tmp/ray; the announcement above says what the sweep is and the progress
    # callback reports the trials. Ray's previous reporter prints nothing at verbose=0.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not plan.settings.resume:
        # Tune's default loggers: result.json / params.json and progress.csv are passed explicitly (``_sweep``; a
        # resumed sweep gets its callbacks back from its folder, and Ray's defaults for what they lack); the
        # TensorBoard logger is left out: nothing here reads its event files, and importing tensorboardX takes 1.3 s
        # of CPU in the driver just as the first trials start (docs/performance.md).
        # TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0 brings it back.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    start = command_start()  # the wall time counts the interpreter start, imports, validation and Ray's start
    if store is None or store.uri != plan.settings.mlflow_uri:
        store = StoreWarmUp(plan.settings.mlflow_uri)
    store.open()  # meanwhile Ray starts and the cluster is checked
    try:
        code = on_ray(plan.settings.address, lambda: _sweep(plan, command, start, store))
    finally:
        store.undo()  # a sweep refused before its parent run leaves no store behind (a kept one stays)
    return code


def _sweep(plan: SweepPlan, command: str, start: float, store: StoreWarmUp) -> int:
    settings = plan.settings
    gpus = checked_gpus(plan)
    store.keep()
    from tune.mlflow_callback import MLflowSweepCallback, writer_for  # imports MLflow: the warm-up did that

    if not settings.resume:  # only now: a sweep refused above leaves nothing behind
        settings.save()
    announce(plan, settings.cpus_per_trial, gpus)
    sampled = tuple(plan.space.distributions())
    baseline = plan.space.baseline
    writer = writer_for(settings.mlflow_uri, settings.name, sampled, settings.repeat_of, baseline)
    tags = {**system_tags(command), "dcml.space": settings.space}
    if settings.repeat_of is not None:
        tags[REPEAT_TAG] = settings.repeat_of
    writer.open(sweep_params(plan, gpus), tags, resume=settings.resume)
    callbacks = [
        MLflowSweepCallback(
            settings.mlflow_uri, settings.name, plan.n_epochs, sampled, settings.repeat_of, baseline,
            top_k=TOP_K_ARTIFACTS, total=settings.num_samples,
        ),
        ProgressCallback(settings.num_samples, plan.n_epochs),
        busy := BusyTime(),
        JsonLoggerCallback(),  # trial_<id>/result.json, params.json: --sync-mlflow and the benchmarks read them
        CSVLoggerCallback(),  # trial_<id>/progress.csv
    ]
    if settings.resume:
        tuner = restore_tuner(plan, settings.cpus_per_trial, gpus)
    else:
        tuner = new_tuner(plan, settings.cpus_per_trial, gpus, callbacks)
    results = tuner.fit()
    records = records_from_results(results, list(sampled), plan.n_epochs, baseline)
    interrupted = any(r.status == UNFINISHED for r in records)
    for record in [] if interrupted else [r for r in ranked(records) if r.checkpoint][:TOP_K_ARTIFACTS]:
        if record.trial_id in writer.checkpoints_uploaded:  # uploaded while the last trials ran
            continue
        with record.checkpoint.as_directory() as directory:  # the best checkpoints of the best trials
            log = writer.pending.get(record.trial_id) or TrialLog(record.trial_id, record.config)
            log.checkpoint = directory
            writer.submit(log)
    ui = ui_command(settings.mlflow_uri, writer.experiment_id)
    slots = trial_slots(settings.cpus_per_trial, gpus, settings.max_concurrent, settings.num_samples)
    now = time.time()  # a resumed sweep's callbacks come back from Tune's state: then the trials' own time counts
    busy_s = busy_seconds(busy.intervals, start, now) if not settings.resume else None
    text, metrics = summary_text(records, now - start, gpus, settings.cpus_per_trial, ui, busy_s=busy_s, slots=slots)
    if writer.flush():  # the last try: the runs' updates first, then the sweep's end
        writer.finish(metrics, status="KILLED" if interrupted else "FINISHED")
    else:
        print(
            f"MLflow {settings.mlflow_uri} is still unreachable: the updates of {len(writer.pending)} trial(s) "
            "are not logged; Ray's results hold them. Once the server is back, run: python tune/run.py "
            f"--space {settings.space} --name {settings.name} --storage {settings.storage} --sync-mlflow",
            flush=True,
        )
    print("\n" + text, flush=True)
    if interrupted:
        print(f"Sweep interrupted; continue it with: {settings.resume_command()}", flush=True)
        return EXIT_INTERRUPTED
    return EXIT_OK
