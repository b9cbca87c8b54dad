"""The part of ``tune/run.py`` that needs Ray: start or join it, open the MLflow sweep, fit, summarise."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import ray

from analysis.trials import REPEAT_TAG
from dcml_core.tracking import TrackingError, git_commit, package_versions, ui_command
from search_spaces import SearchSpace
from tune.cli import SweepSettings
from tune.cluster import (
    ClusterError,
    alive_nodes,
    check_resources,
    check_tracking_for_cluster,
    default_gpus_per_trial,
    start_ray,
)
from tune.mlflow_callback import MLflowSweepCallback, tracker_for
from tune.progress import ProgressCallback
from tune.summary import ranked, records_from_results, summary_text
from tune.tuner import asha_rungs, new_tuner, restore_tuner

TOP_K_ARTIFACTS = 3
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 3


def sweep_params(settings: SweepSettings, space: SearchSpace, gpus: float) -> dict[str, Any]:
    """Parameters of the parent run."""
    params: dict[str, Any] = {
        **{k: v for k, v in settings.to_json().items() if k not in ("mlflow_uri", "search")},
        "searcher": settings.search,
        "gpus_per_trial": gpus,
        "max_epochs": space.n_epochs,
        "sampled_params": ",".join(space.distributions()),
        "metric": space.metric,
        "mode": space.mode,
    }
    if settings.scheduler == "asha":
        params.update({f"asha.{k}": v for k, v in space.scheduler.items()})
    return params


def sweep_tags(settings: SweepSettings, command: str) -> dict[str, str]:
    """Tags of the parent run: code version, package versions, the command line."""
    tags = {
        "dcml.space": settings.space,
        "dcml.git_commit": git_commit(),
        "dcml.command": command,
        **package_versions(),
    }
    if settings.repeat_of is not None:
        tags[REPEAT_TAG] = settings.repeat_of
    return tags


def announce(settings: SweepSettings, space: SearchSpace, cpus: float, gpus: float) -> None:
    rungs = asha_rungs(space.scheduler) if settings.scheduler == "asha" else []
    state = "resumed" if settings.resume else "new"
    at_once = settings.max_concurrent or "as resources allow"
    lines = [
        f"Sweep '{settings.name}' ({state}): space {settings.space}, {settings.num_samples} trials x "
        f"{space.n_epochs} epochs, searcher {settings.search} (seed {settings.seed}), scheduler "
        f"{settings.scheduler}" + (f" (rungs at epochs {rungs})" if rungs else ""),
        f"  per trial {cpus:g} CPU, {gpus:g} GPU; at most {at_once} at once; {len(alive_nodes())} node(s)",
        f"  storage {settings.sweep_path}",
        f"  MLflow {settings.mlflow_uri} (experiment '{settings.name}')",
    ]
    print("\n".join(lines), flush=True)


def log_best_checkpoints(tracker: Any, records: list, k: int = TOP_K_ARTIFACTS) -> None:
    """Upload the best checkpoint of the ``k`` best trials to their MLflow runs."""
    for record in [r for r in ranked(records) if r.checkpoint is not None][:k]:
        with record.checkpoint.as_directory() as directory:
            tracker.log_checkpoint(record.trial_id, directory)


def run_sweep(
    settings: SweepSettings, space: SearchSpace, command: str, repeats: list[dict[str, Any]] | None = None
) -> int:
    """Start or join Ray, run (or resume) the sweep, print the summary; returns the exit code.

    ``repeats``: the full configurations of a new seed-repeat sweep (see ``tune.run.repeat_plan``).
    """
    start = time.time()
    # MLflow prints a "View run at" line per run it ends on a server; the summary prints the UI command
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    start_ray(settings.address)
    try:
        check_tracking_for_cluster(settings.mlflow_uri)
        gpus = settings.gpus_per_trial if settings.gpus_per_trial is not None else default_gpus_per_trial()
        cpus = settings.cpus_per_trial
        check_resources(cpus, gpus)
        if not settings.resume:  # only now: a sweep refused above leaves nothing behind
            settings.save()
        announce(settings, space, cpus, gpus)
        tracker = tracker_for(settings.mlflow_uri, settings.state_dir, settings.name)
        tracker.start_sweep(
            sweep_params(settings, space, gpus), sweep_tags(settings, command), settings.resume
        )
        callbacks = [
            MLflowSweepCallback(
                settings.mlflow_uri,
                settings.state_dir,
                settings.name,
                space.n_epochs,
                repeat_of=settings.repeat_of,
            ),
            ProgressCallback(settings.num_samples, space.n_epochs),
        ]
        if settings.resume:
            tuner = restore_tuner(settings, cpus, gpus)
        else:
            tuner = new_tuner(settings, space, cpus, gpus, callbacks, repeats)
        results = tuner.fit()
        records = records_from_results(results, list(space.distributions()), space.n_epochs)
        interrupted = any(r.status == "unfinished" for r in records)
        if not interrupted:
            log_best_checkpoints(tracker, records)
        text, metrics = summary_text(
            records, time.time() - start, gpus, cpus, ui_command(settings.mlflow_uri)
        )
        tracker.close_unfinished("KILLED")
        tracker.finish_sweep(metrics, status="KILLED" if interrupted else "FINISHED")
        print("\n" + text, flush=True)
        if interrupted:
            print(
                f"Sweep interrupted; continue it with: python tune/run.py --space {settings.space} "
                f"--name {settings.name} --storage {settings.storage} --resume",
                flush=True,
            )
            return EXIT_INTERRUPTED
        return EXIT_OK
    except (ClusterError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        ray.shutdown()
