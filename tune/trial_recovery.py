"""How a trial comes back after a failure: restore from the newest *usable* checkpoint, never retry a failure
that would only repeat.

* Checkpoint fallback: Tune hands a restarted trial its latest checkpoint. If that one is corrupt or truncated
  (a disk filled up, a node died while the storage was syncing), :func:`restore_engine` says so and tries the
  trial's older kept checkpoints (``checkpoint_<n>`` folders beside it, newest first) before giving up.
* Deterministic failures: a NaN/inf loss or a device out-of-memory error repeats identically after an exact
  resume, so retrying it only burns GPU time. :func:`remember_fatal` records such a failure in the trial's
  folder; :func:`raise_if_fatal` at the start of a retry raises it again at once, so the trial ends FAILED with
  the original reason (and Tune's ``max_failures`` budget stays for real crashes such as a lost worker).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcml_core.checkpoint import CheckpointError
from dcml_core.engine import DeviceOutOfMemoryError, Engine, NonFiniteLossError

FATAL_FILE = "dcml_fatal_error.json"
DETERMINISTIC = (NonFiniteLossError, DeviceOutOfMemoryError)
_INDEX = re.compile(r"checkpoint_(\d+)")


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
    candidates: list[Any], device: str, load_extra: Callable[[Path], Any], say: Callable[[str], None] = print
) -> tuple[Engine, Any]:
    """The engine (and ``load_extra(dir)``) from the first candidate checkpoint that loads; each skipped one
    is reported through ``say``. Raises :class:`CheckpointError` listing every failure when none loads."""
    failures = []
    for i, checkpoint in enumerate(candidates):
        with checkpoint.as_directory() as directory:
            try:
                extra = load_extra(Path(directory))
                engine = Engine.restore(directory, device=device)
            except CheckpointError as err:
                failures.append(f"{checkpoint.path}: {err}")
                nxt = "falling back to the previous checkpoint" if i + 1 < len(candidates) else "none left"
                say(f"[dcml] checkpoint {checkpoint.path} is unusable ({err}); {nxt}")
                continue
        if i > 0:
            say(f"[dcml] restored from the older checkpoint {checkpoint.path} (epoch {engine.epoch})")
        return engine, extra
    raise CheckpointError(
        "no usable checkpoint to restore the trial from: "
        + "; ".join(failures)
        + ". Delete the trial's folder to start it over, or let the sweep go on without it."
    )


def remember_fatal(trial_dir: str | Path, err: BaseException) -> None:
    """Record a deterministic failure in the trial's folder (read by :func:`raise_if_fatal` on a retry)."""
    record = {"type": type(err).__name__, "message": str(err)}
    path = Path(trial_dir) / FATAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def raise_if_fatal(trial_dir: str | Path) -> None:
    """Raise :class:`RepeatedTrialFailure` when an earlier attempt of this trial failed deterministically."""
    path = Path(trial_dir) / FATAL_FILE
    if not path.is_file():
        return
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # unreadable record: let the retry run
    raise RepeatedTrialFailure(
        f"{record.get('type')}: {record.get('message')} (not retried: the failure repeats after a restore)"
    )
