"""The settings that define a sweep, where its files live, and how they are saved for ``--resume``."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcml_core.tracking import STATE_SUBDIR
from tune.cli import UsageError

DEFAULT_STORAGE = "runs/ray"  # relative to the current folder, made absolute
SETTINGS_FILE = "sweep.json"
# Our files live in a subfolder of Ray's experiment folder: on restore Ray copies the folder's top-level *.json
# and *.pkl files to its staging folder and later uploads them back, which would overwrite newer versions of ours.
# Settings that define a sweep; on --resume they come from sweep.json and may not change.
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


@dataclass(frozen=True)
class SweepSettings:
    """Everything that defines a sweep (flags after defaults and checks)."""

    space: str
    name: str
    storage: str  # absolute path or URI of Ray's storage root; the sweep lives in <storage>/<name>
    data_root: str | None
    num_samples: int
    max_epochs: int | None
    scheduler: str  # asha | fifo
    search: str  # optuna | random | fixed (seed repeats: the configurations are given)
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
    def storage_is_local(self) -> bool:
        return "://" not in self.storage or self.storage.startswith("file://")

    @property
    def sweep_path(self) -> str:
        """Ray's experiment folder (path or URI) of this sweep."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def state_dir(self) -> Path:
        return state_dir(self.storage, self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            k: v for k, v in dataclasses.asdict(self).items() if k not in ("resume", "dry_run", "address")
        }

    def save(self) -> None:
        """Write ``sweep.json`` atomically (through a temporary file and a rename)."""
        path = self.state_dir / SETTINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def resume_command(self) -> str:
        return (
            f"python tune/run.py --space {self.space} --name {self.name} --storage {self.storage} --resume"
        )


def state_dir(storage: str, name: str) -> Path:
    """Folder of sweep.json and optuna.db: <sweep>/sweep_state, or ./runs/state/<name> for remote storage."""
    if "://" not in storage or storage.startswith("file://"):
        return Path(storage.removeprefix("file://")) / name / STATE_SUBDIR
    return (Path.cwd() / "runs" / "state" / name).resolve()


def storage_root(value: str | None, create: bool = True) -> str:
    """An absolute, writable storage path (created unless ``create`` is False), or a URI as given."""
    if value and "://" in value and not value.startswith("file://"):
        return value
    path = Path((value or DEFAULT_STORAGE).removeprefix("file://")).expanduser().resolve()
    if not create:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            why = "not a folder" if existing is not None and not existing.is_dir() else "not writable"
            raise UsageError(
                f"--storage {path}: cannot create it ({existing} is {why}); pass a writable folder"
            )
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


def default_name(space: str, repeat_of: str | None = None) -> str:
    """``<space>-<time>``, or ``<original>-repeats-<time>`` for seed repeats."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{repeat_of}-repeats-{stamp}" if repeat_of else f"{space}-{stamp}"


def load_saved(folder: Path, name: str) -> dict[str, Any]:
    """The settings saved by the first run of sweep ``name`` (for --resume and --sync-mlflow)."""
    path = folder / SETTINGS_FILE
    if not path.exists():
        raise UsageError(f"no sweep '{name}' in {folder.parent.parent} ({path} missing); check --name and --storage")
    return json.loads(path.read_text())


def merge_resume(given: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """Saved settings, with a clear error for any flag given on --resume that would change them."""
    if given["space"] != saved["space"]:
        raise UsageError(f"sweep '{saved['name']}' was run with --space {saved['space']}, not {given['space']}")
    for key in FROZEN_ON_RESUME:
        if given[key] is not None and given[key] != saved.get(key):
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"{flag} cannot change on --resume (the sweep used {saved.get(key)!r}, got {given[key]!r})"
            )
    return saved


def settings_from_args(args: Any) -> SweepSettings:
    """Checked settings of a new sweep or, with --resume, the saved ones (``args``: the parsed flags)."""
    import search_spaces
    from dcml_core.tracking import resolve_tracking_uri

    space = search_spaces.get(args.space)
    storage = storage_root(args.storage, create=False)  # created by the sweep once every check passed
    given = {k: getattr(args, k) for k in (*FROZEN_ON_RESUME, "space", "address", "dry_run")}
    if args.data_root is not None:
        given["data_root"] = str(Path(args.data_root).expanduser().resolve())
    if args.mlflow_uri is not None:
        given["mlflow_uri"] = resolve_tracking_uri(args.mlflow_uri)
    if args.resume:
        saved = merge_resume(given, load_saved(state_dir(storage, args.name), args.name))
        return SweepSettings(**{**saved, "storage": storage, "address": args.address, "resume": True})
    repeat = args.from_sweep is not None  # seed repeats: K x N fixed configurations, FIFO (cli checks the flags)
    fresh = SweepSettings(**{
        **given,
        "name": args.name or default_name(args.space, args.from_sweep),
        "storage": storage,
        "num_samples": args.repeat_top_k * args.seeds if repeat else args.num_samples or space.defaults["num_samples"],
        "scheduler": "fifo" if repeat else args.scheduler or "asha",
        "search": "fixed" if repeat else args.search or "optuna",
        "cpus_per_trial": args.cpus_per_trial or space.defaults["cpus_per_trial"],
        "max_concurrent": args.max_concurrent or space.defaults["max_concurrent"],
        "mlflow_uri": given["mlflow_uri"] or resolve_tracking_uri(None),
        "seed": args.seed or 0,
        "repeat_of": args.from_sweep,
        "repeat_top_k": args.repeat_top_k,
        "repeat_seeds": args.seeds,
    })  # fmt: skip
    folder = Path(fresh.sweep_path)
    if not args.dry_run and fresh.storage_is_local and folder.exists() and any(folder.iterdir()):
        raise UsageError(
            f"sweep '{fresh.name}' already exists in {fresh.sweep_path}: continue it with --resume or pick "
            "another --name"
        )
    return fresh
