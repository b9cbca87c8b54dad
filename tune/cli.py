"""Command line of ``tune/run.py``: flags, their checks, and the sweep settings saved for ``--resume``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STORAGE = "runs/ray"  # relative to the current folder, made absolute
SETTINGS_FILE = "sweep.json"
# Our files live in a subfolder of Ray's experiment folder: on restore Ray copies the folder's top-level *.json
# and *.pkl files to its staging folder and later uploads them back, which would overwrite newer versions of ours.
STATE_SUBDIR = "sweep_state"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ADDRESS = re.compile(r"auto|ray://.+|[^\s:/]+:\d+")
# A seed-repeat sweep grid-searches over full configuration dicts stored under this key of the trial config.
REPEAT_KEY = "repeat"
# Flags that define a sweep; on --resume they come from sweep.json and may not change.
FROZEN_ON_RESUME = (
    "num_samples",
    "max_epochs",
    "scheduler",
    "search",
    "seed",
    "data_root",
    "mlflow_uri",
    "gpus_per_trial",
    "cpus_per_trial",
    "max_concurrent",
)


class UsageError(ValueError):
    """A flag is invalid or inconsistent; the message says which and how to fix it."""


@dataclass(frozen=True)
class SweepSettings:
    """Everything that defines a sweep (flags after defaults and checks)."""

    space: str
    name: str
    storage: str  # absolute path or URI of Ray's storage root; the sweep lives in <storage>/<name>
    data_root: str | None
    num_samples: int
    max_epochs: int | None
    scheduler: str
    search: str
    gpus_per_trial: float | None  # None: 1 when the cluster has GPUs, else 0
    cpus_per_trial: float
    max_concurrent: int | None
    address: str | None
    mlflow_uri: str
    seed: int
    resume: bool = False
    dry_run: bool = False
    repeat_of: str | None = None  # seed-repeat sweep: the finished sweep whose best configurations it re-runs
    repeat_top_k: int | None = None
    repeat_seeds: int | None = None  # seeds 0 .. repeat_seeds - 1

    @property
    def is_repeat(self) -> bool:
        return self.repeat_of is not None

    @property
    def storage_is_local(self) -> bool:
        return "://" not in self.storage or self.storage.startswith("file://")

    @property
    def sweep_path(self) -> str:
        """Ray's experiment folder (path or URI) of this sweep."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def state_dir(self) -> Path:
        """Folder of sweep.json, mlflow.json and optuna.db: <sweep>/sweep_state, or ./runs/state/<name>."""
        if self.storage_is_local:
            return Path(self.storage.removeprefix("file://")) / self.name / STATE_SUBDIR
        return (Path.cwd() / "runs" / "state" / self.name).resolve()

    def to_json(self) -> dict[str, Any]:
        return {
            k: v for k, v in dataclasses.asdict(self).items() if k not in ("resume", "dry_run", "address")
        }

    def save(self) -> None:
        from tune.sweep_tracker import atomic_write_json

        atomic_write_json(self.state_dir / SETTINGS_FILE, self.to_json())


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
    p.add_argument("--storage", help=f"Ray storage root, path or URI (default: ./{DEFAULT_STORAGE})")
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


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration dict of a trial (unwrapped from :data:`REPEAT_KEY` in seed-repeat sweeps)."""
    inner = config.get(REPEAT_KEY)
    return inner if isinstance(inner, dict) else config


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
    if not _NAME.fullmatch(args.from_sweep):
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
    if args.name and not _NAME.fullmatch(args.name):
        raise UsageError(f"--name {args.name!r}: use letters, digits, '_', '.', '-' (no spaces or slashes)")
    if args.address and not _ADDRESS.fullmatch(args.address):
        raise UsageError(f"--address {args.address!r}: expected 'auto' or HOST:PORT, e.g. 10.0.0.5:6379")
    _positive(args.num_samples, "--num-samples")
    _positive(args.max_epochs, "--max-epochs")
    _positive(args.max_concurrent, "--max-concurrent")
    _positive(args.cpus_per_trial, "--cpus-per-trial")
    _positive(args.gpus_per_trial, "--gpus-per-trial", allow_zero=True)
    if (
        args.gpus_per_trial is not None
        and args.gpus_per_trial > 1
        and not float(args.gpus_per_trial).is_integer()
    ):
        raise UsageError(
            f"--gpus-per-trial {args.gpus_per_trial:g}: above 1 GPU only whole GPUs can be requested"
        )
    check_repeat_args(args)


# The flags --sync-mlflow takes; every other one is refused (it only reads a finished sweep's saved settings).
SYNC_FLAGS = ("sync_mlflow", "name", "storage", "space", "list")


def check_sync_args(args: argparse.Namespace) -> None:
    """``--sync-mlflow`` needs ``--name`` and takes only ``--storage`` and ``--space`` (checked) besides."""
    if not args.name:
        raise UsageError("--sync-mlflow needs --name NAME: the sweep whose Ray results are logged to MLflow")
    if not _NAME.fullmatch(args.name):
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


def storage_root(value: str | None, create: bool = True) -> str:
    """An absolute, writable storage path (created unless ``create`` is False), or a URI as given."""
    if value and "://" in value and not value.startswith("file://"):
        return value
    path = Path((value or DEFAULT_STORAGE).removeprefix("file://")).expanduser().resolve()
    if not create:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            raise UsageError(f"--storage {path}: {existing} is not a writable folder; pass a writable folder")
        return str(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"--storage {path}: cannot create it ({err.strerror}); pass a writable folder"
        ) from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"--storage {path} is not writable; pass a writable folder")
    return str(path)


def default_name(space: str) -> str:
    return f"{space}-{time.strftime('%Y%m%d-%H%M%S')}"


def default_repeat_name(original: str) -> str:
    return f"{original}-repeats-{time.strftime('%Y%m%d-%H%M%S')}"


def load_saved(state_dir: Path) -> dict[str, Any]:
    """The settings saved by the first run of a sweep (for --resume)."""
    path = state_dir / SETTINGS_FILE
    if not path.exists():
        raise UsageError(
            f"no sweep to resume in {state_dir} ({SETTINGS_FILE} missing); check --name and --storage"
        )
    return json.loads(path.read_text())


def merge_resume(args: argparse.Namespace, saved: dict[str, Any]) -> dict[str, Any]:
    """Saved settings, with a clear error for any flag given on --resume that would change them."""
    if args.space != saved["space"]:
        raise UsageError(f"sweep '{saved['name']}' was run with --space {saved['space']}, not {args.space}")
    for key in FROZEN_ON_RESUME:
        given = getattr(args, key)
        if key == "data_root" and given is not None:
            given = str(Path(given).expanduser().resolve())
        if given is not None and given != saved.get(key):
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"{flag} cannot change on --resume (the sweep used {saved.get(key)!r}, got {given!r})"
            )
    return saved
