"""How a trial comes back after a failure: restore from the newest *usable* checkpoint, never retry a failure
that would only repeat.

* Checkpoint fallback: Tune hands a restarted trial its latest checkpoint. If that one is corrupt or truncated
  (a disk filled up, a node died while the storage was syncing), :func:`restore_engine` says so and tries the
  trial's older kept checkpoints (``checkpoint_<n>`` folders beside it, newest first) before giving up.
* Deterministic failures: a NaN/inf loss, a GPU share that CUDA cannot use, or an out-of-memory error on a
  whole GPU repeats identically after an exact resume, so retrying it only burns GPU time. :func:`remember_fatal` records such a failure in the trial's
  folder; :func:`raise_if_fatal` at the start of a retry raises it again at once, so the trial ends FAILED with
  the original reason (and Tune's ``max_failures`` budget stays for real crashes such as a lost worker).
* An out-of-memory error on a *shared* GPU that outlived the in-place retries (:mod:`dcml_core.oom`) is
  :class:`SharedGpuOutOfMemoryError`: not remembered, so Tune restarts the trial in a fresh process from its
  last checkpoint (within ``max_failures``); only a trial that exhausts those ends FAILED.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcml_core.checkpoint import CheckpointError, first_usable
from dcml_core.engine import DeviceOutOfMemoryError, Engine, NonFiniteLossError
from tune.trial_device import NoUsableGpuError

FATAL_FILE = "dcml_fatal_error.json"
DETERMINISTIC = (NonFiniteLossError, DeviceOutOfMemoryError, NoUsableGpuError)
_INDEX = re.compile(r"checkpoint_(\d+)")


class SharedGpuOutOfMemoryError(RuntimeError):
    """A trial that shares its GPU kept running out of memory in place; Tune retries it from a checkpoint."""


class RepeatedTrialFailure(RuntimeError):
    """A retry of a trial whose previous attempt failed deterministically (the message holds the reason)."""


def checkpoint_index(path: str) -> int:
    """The number of a Tune checkpoint folder (``.../checkpoint_000004`` -> 4; -1 if it has none)."""
    match = _INDEX.fullmatch(Path(path.rstrip("/")).name)
    return int(match.group(1)) if match else -1


def checkpoint_candidates(latest: Any) -> list[Any]:
    """``latest`` then the trial's older kept checkpoints, newest first (any pyarrow file system)."""
    from pyarrow import fs as pafs
    from ray import tune

    parent = str(Path(latest.path.rstrip("/")).parent)
    try:
        infos = latest.filesystem.get_file_info(pafs.FileSelector(parent))
    except OSError:  # listing failed: the latest is all we know of
        return [latest]
    newest = checkpoint_index(latest.path)
    older = [
        i.path for i in infos if i.type == pafs.FileType.Directory and 0 <= checkpoint_index(i.path) < newest
    ]
    older.sort(key=checkpoint_index, reverse=True)
    return [latest, *(tune.Checkpoint(p, filesystem=latest.filesystem) for p in older)]


def restore_engine(
    candidates: list[Any],
    device: str,
    load_extra: Callable[[Path], Any],
    say: Callable[[str], None] = print,
    options: dict[str, Any] | None = None,
) -> tuple[Engine, Any]:
    """The engine (and ``load_extra(dir)``) from the first candidate checkpoint that loads (see
    :func:`dcml_core.checkpoint.first_usable`); ``options`` go to :meth:`Engine.restore`."""

    def restore(checkpoint: Any) -> tuple[Engine, Any]:
        with checkpoint.as_directory() as directory:
            extra = load_extra(Path(directory))
            return Engine.restore(directory, device=device, **(options or {})), extra

    try:
        return first_usable(candidates, restore, say, name=lambda checkpoint: checkpoint.path)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err}. Delete the trial's folder to start it over, or let the sweep go on without it."
        ) from None


def trial_folder() -> tuple[Any, str]:
    """(pyarrow file system, path) of this trial's folder in the sweep's storage (shared by every node, unlike
    the worker's local working directory)."""
    from ray import tune

    storage = tune.get_context().get_storage()
    return storage.storage_filesystem, storage.trial_fs_path


def remember_fatal(folder: tuple[Any, str], err: BaseException) -> None:
    """Record a deterministic failure in the trial's folder (read by :func:`raise_if_fatal` on a retry)."""
    fs, path = folder
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{FATAL_FILE}") as out:
        out.write(json.dumps({"type": type(err).__name__, "message": str(err)}).encode())


def raise_if_fatal(folder: tuple[Any, str]) -> None:
    """Raise :class:`RepeatedTrialFailure` when an earlier attempt of this trial failed deterministically."""
    from pyarrow import fs as pafs

    fs, path = folder
    target = f"{path}/{FATAL_FILE}"
    if fs.get_file_info(target).type != pafs.FileType.File:
        return
    try:
        with fs.open_input_stream(target) as f:
            record = json.loads(f.read().decode())
    except (OSError, ValueError):
        return  # unreadable record: let the retry run
    raise RepeatedTrialFailure(
        f"{record.get('type')}: {record.get('message')} (not retried: the failure repeats after a restore)"
    )
