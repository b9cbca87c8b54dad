"""What ``tune/run.py`` does once its flags are parsed: ``--list``, ``--sync-mlflow``, or a sweep.

Settings -> plan (what the trials run: a search, or seed repeats) -> validate everything without Ray (space,
configurations, data root, MLflow store, storage, resume state) -> :func:`tune.driver.run_sweep` (Ray, MLflow
parent run, Tuner.fit or restore, summary). Invalid input ends with one line on stderr and exit code 2, before
Ray starts. Importing this module imports torch and Ray Tune (seconds): ``run.py`` starts the MLflow store's
warm-up before.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import search_spaces
from dcml_core.tracking import TrackingError, check_tracking_uri, config_id
from tune.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, check_args, check_sync_args
from tune.cluster import ClusterError, check_address
from tune.plan import SweepPlan, plan_sweep
from tune.preflight import (
    check_disk,
    check_no_credentials,
    check_own_folder,
    check_space_edges,
    checkpoint_bytes,
)
from tune.settings import SweepSettings, load_saved, settings_from_args, state_dir, storage_root
from tune.store_warmup import StoreWarmUp
from tune.validation import validate_configs, validate_space

# What bad input raises before Ray starts: ValueError covers UsageError, SearchSpaceError and ConfigError;
# OSError and friends come from data, weights and storage.
INPUT_ERRORS = (ValueError, OSError, ClusterError, TrackingError)


def list_spaces() -> str:
    """One paragraph per search space."""
    out = []
    for name in search_spaces.available():
        space = search_spaces.get(name)
        sampled = ", ".join(space.distributions())
        out.append(f"{name}: {space.description}\n    {space.n_epochs} epochs, samples {sampled}")
    return "\n".join(out)


def check_resumable(settings: SweepSettings) -> None:
    from ray import tune

    if settings.storage_is_local:
        check_own_folder(Path(settings.sweep_path))
        check_own_folder(settings.state_dir)
    if not tune.Tuner.can_restore(settings.sweep_path):
        raise UsageError(
            f"sweep '{settings.name}' has no Tune state in {settings.sweep_path} (its driver stopped before "
            "the first trial was set up); start it again without --resume"
        )


def validate(plan: SweepPlan) -> str:
    """Check everything a trial will meet, before Ray starts; returns the ``--dry-run`` text."""
    s = plan.settings
    if plan.configs:
        lines = [
            f"Seed repeats of sweep '{s.repeat_of}': best {s.repeat_top_k} configuration(s) x seeds "
            f"0..{s.repeat_seeds - 1} = {len(plan.configs)} runs (FIFO, full length)",
        ]
        for cfg in validate_configs(plan.configs)[0]:
            lines.append(f"  config {config_id(cfg.flat())}  seed {cfg.seed}  {cfg.schedule.n_epochs} epochs")
        return "\n".join([*lines, f"All {len(plan.configs)} configurations are valid."])
    check_space_edges(plan.space, s.seed)  # every value it can draw, before any data is read
    report = validate_space(plan.space, n=s.num_samples if s.dry_run else min(s.num_samples, 8), seed=s.seed)
    if not s.resume and not s.dry_run:
        per_checkpoint = checkpoint_bytes(report.configs[0], int(report.data["n_train_classes"]))
        check_disk(s.storage, s.num_samples, per_checkpoint)
    return report.text(plan.space, s.seed)


def sync(name: str, storage: str | None, space: str | None) -> int:
    """``--sync-mlflow``: print the figures. Bad input raises (exit 2); an MLflow that fails midway gives exit
    code 1 (what was sent stays; run it again)."""
    from tune.mlflow_writer import is_outage
    from tune.sync_mlflow import sync_sweep

    root = storage_root(storage, create=False)
    if "://" in root and not root.startswith("file://"):
        raise UsageError(
            f"--sync-mlflow reads Ray's results from a folder; --storage {root} is remote: copy the sweep "
            "folder to a local path (or mount it) and pass that as --storage"
        )
    settings = load_saved(state_dir(root, name), name)
    if space and space != settings["space"]:
        raise UsageError(f"sweep '{name}' was run with --space {settings['space']}, not {space}")
    uri = settings["mlflow_uri"]
    check_tracking_uri(uri)
    try:
        created, trials, n = sync_sweep(state_dir(root, name).parent, settings)
    except Exception as err:
        if not is_outage(err):
            raise
        print(f"error: MLflow {uri} failed during the sync ({err}); what was sent stays, run it again", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"Synced sweep '{name}' to MLflow {uri} (parent run {'created' if created else 'found'}): {trials} trials, "
        f"{n['created']} child run(s) created, {n['present']} metric values already present, {n['added']} added, "
        f"{n['ended']} run(s) ended",
        flush=True,
    )
    return EXIT_OK


def execute(args: Any, command: str, store: StoreWarmUp | None = None) -> int:
    """Run the parsed command line ``args`` (``command``: how it was typed, for the MLflow tags); ``store``: the
    MLflow store's warm-up that ``run.py`` started, if any. Returns the exit code."""
    try:
        if args.list:
            print(list_spaces())
            return EXIT_OK
        if args.sync_mlflow:  # complete MLflow from Ray's results on disk; no Ray runtime needed
            check_sync_args(args)
            return sync(args.name, args.storage, args.space)
        check_args(args)
        if args.mlflow_uri is not None:
            check_no_credentials(args.mlflow_uri)
        settings = settings_from_args(args)
        check_tracking_uri(settings.mlflow_uri)
        check_address(settings.address)
        if settings.resume:
            check_resumable(settings)
        plan = plan_sweep(settings)
        text = validate(plan)
    except INPUT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if plan.settings.dry_run:
        print(text)
        return EXIT_OK
    from tune.driver import check_only, run_sweep  # imports Ray; only now

    if args.check_cluster:
        return check_only(plan)

    return run_sweep(plan, command, store)
