"""Command line of ``tune/run.py``: the flags, the checks of each flag on its own, and the exit codes."""

from __future__ import annotations

import argparse
import re

# Exit codes of tune/run.py (and of --sync-mlflow)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 3
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ADDRESS = re.compile(r"auto|ray://.+|[^\s:/]+:\d+")


class UsageError(ValueError):
    """A flag is invalid or inconsistent; the message says which and how to fix it."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tune/run.py``."""
    p = argparse.ArgumentParser(
        prog="python tune/run.py",
        description="Run a DCML/DiVA hyper-parameter sweep with Ray Tune, logged to MLflow (docs/sweeps.md).",
    )
    p.add_argument("--space", help="search space name (see --list); required")
    p.add_argument("--list", action="store_true", help="list the search spaces and exit")
    p.add_argument("--data-root", help="dataset folder (or its parent); not needed for the demo spaces")
    p.add_argument("--num-samples", type=int, help="number of trials (default: the space's)")
    p.add_argument(
        "--max-epochs", type=int, help="epochs per trial (default: the space's); rungs move inside"
    )
    p.add_argument(
        "--scheduler", choices=["asha", "fifo"], help="early stopping: asha (default) or fifo (none)"
    )
    p.add_argument("--search", choices=["optuna", "random"], help="searcher: optuna TPE (default) or random")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial, fractions pack trials on a card (default: 1 if the cluster has GPUs, else 0)",
    )
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: the space's)")
    p.add_argument(
        "--max-concurrent", type=int, help="at most this many trials at once (default: as resources allow)"
    )
    p.add_argument(
        "--address", help="join a running Ray cluster: auto or HOST:PORT (default: start a local Ray)"
    )
    p.add_argument("--storage", help="Ray storage root, path or URI (default: ./runs/ray)")
    p.add_argument(
        "--mlflow-uri",
        help="MLflow tracking URI: http(s)://, sqlite:///..., or a folder "
        "(default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)",
    )
    p.add_argument("--name", help="sweep name = MLflow experiment (default: <space>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name after its driver stopped")
    p.add_argument(
        "--sync-mlflow",
        action="store_true",
        help="log to MLflow what the sweep --name (in --storage) recorded and MLflow misses (after an outage)",
    )
    p.add_argument("--seed", type=int, help="seed of the searcher (default 0)")
    p.add_argument(
        "--dry-run", action="store_true", help="sample and validate configurations, print them, start nothing"
    )
    p.add_argument(
        "--check-cluster",
        action="store_true",
        help="check every Ray node for this sweep (CUDA, faiss, data, weights, shared storage), print a table, exit",
    )
    p.add_argument(
        "--repeat-top-k",
        type=int,
        metavar="K",
        help="seed repeats: re-run the K best configurations of the sweep --from at full length (FIFO)",
    )
    p.add_argument(
        "--seeds", type=int, metavar="N", help="seed repeats: run each configuration with seeds 0..N-1"
    )
    p.add_argument(
        "--from",
        dest="from_sweep",
        metavar="NAME",
        help="seed repeats: the finished sweep (MLflow experiment)",
    )
    return p


def check_repeat_args(args: argparse.Namespace) -> None:
    """``--repeat-top-k``, ``--seeds`` and ``--from`` go together and exclude the flags of a searched sweep."""
    given = {
        "--repeat-top-k": args.repeat_top_k,
        "--seeds": args.seeds,
        "--from": args.from_sweep,
    }
    if all(v is None for v in given.values()):
        return
    if args.resume:
        raise UsageError(
            f"{', '.join(k for k, v in given.items() if v is not None)} cannot be given with --resume "
            "(the repeat sweep's settings are saved; pass only --space, --name and --resume)"
        )
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise UsageError(
            f"seed repeats need --repeat-top-k K, --seeds N and --from NAME together; missing {', '.join(missing)}"
        )
    if args.repeat_top_k < 1:
        raise UsageError(f"--repeat-top-k must be >= 1, got {args.repeat_top_k}")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if not NAME.fullmatch(args.from_sweep):
        raise UsageError(f"--from {args.from_sweep!r}: not a sweep name (letters, digits, '_', '.', '-')")
    searched = [
        f for f, v in (("--num-samples", args.num_samples), ("--search", args.search)) if v is not None
    ]
    if args.scheduler == "asha":
        searched.append("--scheduler asha")
    if searched:
        raise UsageError(
            f"{', '.join(searched)} cannot be used with --repeat-top-k: a repeat sweep runs K x N fixed "
            "configurations at full length (FIFO, no searcher)"
        )


def _positive(value: float | None, flag: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {value:g}")


def check_args(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` for flags that are wrong on their own (before any space or data is read)."""
    if not args.space:
        raise UsageError("--space NAME is required (python tune/run.py --list shows the spaces)")
    if args.resume and not args.name:
        raise UsageError("--resume needs --name NAME: the name of the sweep to continue")
    if args.resume and args.dry_run:
        raise UsageError("--dry-run and --resume exclude each other")
    if args.check_cluster and (args.dry_run or args.resume):
        raise UsageError("--check-cluster checks the cluster for a new sweep: without --dry-run or --resume")
    if args.name and not NAME.fullmatch(args.name):
        raise UsageError(f"--name {args.name!r}: use letters, digits, '_', '.', '-' (no spaces or slashes)")
    if args.address and not _ADDRESS.fullmatch(args.address):
        raise UsageError(f"--address {args.address!r}: expected 'auto' or HOST:PORT, e.g. 10.0.0.5:6379")
    _positive(args.num_samples, "--num-samples")
    _positive(args.max_epochs, "--max-epochs")
    _positive(args.max_concurrent, "--max-concurrent")
    _positive(args.cpus_per_trial, "--cpus-per-trial")
    _positive(args.gpus_per_trial, "--gpus-per-trial", allow_zero=True)
    if args.gpus_per_trial is not None and args.gpus_per_trial > 1:
        from tune.trial_device import whole_gpus_refused

        raise UsageError(whole_gpus_refused(args.gpus_per_trial))
    check_repeat_args(args)


# The flags --sync-mlflow takes; every other one is refused (it only reads a finished sweep's saved settings).
SYNC_FLAGS = ("sync_mlflow", "name", "storage", "space", "list")


def check_sync_args(args: argparse.Namespace) -> None:
    """``--sync-mlflow`` needs ``--name`` and takes only ``--storage`` and ``--space`` (checked) besides."""
    if not args.name:
        raise UsageError("--sync-mlflow needs --name NAME: the sweep whose Ray results are logged to MLflow")
    if not NAME.fullmatch(args.name):
        raise UsageError(f"--name {args.name!r}: use letters, digits, '_', '.', '-' (no spaces or slashes)")
    other = [
        "--from" if key == "from_sweep" else "--" + key.replace("_", "-")
        for key, value in vars(args).items()
        if key not in SYNC_FLAGS and value not in (None, False)
    ]
    if other:
        raise UsageError(
            f"{', '.join(other)} cannot be given with --sync-mlflow (it takes --name, --storage and --space; "
            "the rest comes from the sweep's saved settings)"
        )
