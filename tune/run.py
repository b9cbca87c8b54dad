"""Run a hyper-parameter sweep: ``python tune/run.py --space NAME`` or ``python -m tune.run`` (``--help``,
docs/sweeps.md).

Parse the flags -> for a new sweep whose MLflow store is a new local SQLite file, start creating its tables in
another process (:mod:`tune.store_warmup`: it runs while this process imports torch and Ray Tune and checks the
input) -> :func:`tune.command.execute` (settings, plan, every check before Ray, then the sweep). A command refused
by its checks leaves no store behind. The package must be importable (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from dcml_core.tracking import TrackingError, tracking_uri
from tune.cli import UsageError, build_parser, check_args
from tune.store_warmup import StoreWarmUp


def early_store(args: argparse.Namespace) -> StoreWarmUp | None:
    """The warm-up of a new sweep's MLflow store (it starts creating a new local SQLite file at once); None for
    every other command (``--list``, ``--sync-mlflow``, ``--dry-run``, ``--check-cluster``, ``--resume``) and for
    flags that are wrong on their own (the command reports them)."""
    if args.list or args.sync_mlflow or args.dry_run or args.check_cluster or args.resume:
        return None
    try:
        check_args(args)
        uri = tracking_uri(args.mlflow_uri)
    except (UsageError, TrackingError):
        return None
    return StoreWarmUp(uri)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    store = early_store(args)
    try:
        from tune.command import execute  # torch, Ray Tune: seconds, while the store is being created

        return execute(args, " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), store)
    finally:
        if store is not None:
            store.undo()  # removes only what a refused sweep created: a sweep that went ahead keeps its store


if __name__ == "__main__":
    sys.exit(main())
