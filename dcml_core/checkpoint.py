"""Checkpoints are directories: ``state.pt`` (tensors and plain values, ``weights_only``-loadable) plus
``config.json``. Writes are atomic (temp file then rename) so a crash never leaves a half-written state."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
LATEST, PREVIOUS = "latest", "previous"  # rotated checkpoint folders of a single run


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, truncated or does not match the configuration."""


def save_checkpoint(
    directory: str | Path, state: dict[str, Any], config_json: str, durable: bool = True
) -> Path:
    """Write ``state`` and the configuration into ``directory`` (created if needed).

    ``durable=False`` skips the temporary file, rename and fsync: for a staging folder that something else
    (Ray) copies to its final place, where a crash mid-write only loses the staging copy.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not durable:
        (directory / CONFIG_FILE).write_text(config_json)
        with open(directory / STATE_FILE, "wb") as f:
            torch.save(state, f)
        return directory
    _atomic_write(directory / CONFIG_FILE, lambda f: f.write(config_json.encode()))
    _atomic_write(directory / STATE_FILE, lambda f: torch.save(state, f))
    return directory


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(state, config_dict)``; raise :class:`CheckpointError` naming the file on any problem."""
    directory = Path(directory)
    state_path, config_path = directory / STATE_FILE, directory / CONFIG_FILE
    for path in (state_path, config_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint file {config_path} is unreadable: {err}") from err
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, unpickling error, ...
        raise CheckpointError(f"checkpoint file {state_path} is corrupt or truncated: {err}") from err
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"checkpoint file {state_path} does not hold an engine state")
    return state, config


def save_rotating(run_dir: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write a new ``<run_dir>/latest`` with ``write(folder)``, keeping the one before as ``previous``.

    The new checkpoint is complete on disk before the old ones move, so a crash at any point leaves at least
    one loadable checkpoint.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=run_dir, prefix=".incoming-"))
    try:
        write(staging)
        latest, previous = run_dir / LATEST, run_dir / PREVIOUS
        if latest.is_dir():
            if previous.is_dir():
                shutil.rmtree(previous)
            os.replace(latest, previous)
        os.replace(staging, latest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return run_dir / LATEST


def resume_candidates(path: str | Path) -> list[Path]:
    """Checkpoint folders to resume from, newest first: a run folder gives ``latest`` then ``previous``."""
    path = Path(path)
    if path.name == LATEST and (path.parent / PREVIOUS).is_dir():
        return [path, path.parent / PREVIOUS]
    rotated = [path / name for name in (LATEST, PREVIOUS) if (path / name).is_dir()]
    return rotated or [path]


def first_usable(
    candidates: list[Any],
    restore: Callable[[Any], Any],
    say: Callable[[str], None],
    name: Callable[[Any], str] = str,
) -> Any:
    """``restore(candidate)`` of the first candidate that loads, newest first; every unusable one is reported
    through ``say`` (as ``name(candidate)``). Raises :class:`CheckpointError` listing them when none loads."""
    failures = []
    for i, candidate in enumerate(candidates):
        try:
            out = restore(candidate)
        except CheckpointError as err:
            failures.append(str(err))
            nxt = "falling back to the previous checkpoint" if i + 1 < len(candidates) else "none left"
            say(f"checkpoint {name(candidate)} is unusable ({err}); {nxt}")
            continue
        if i > 0:
            say(f"restored from the older checkpoint {name(candidate)}")
        return out
    raise CheckpointError("no usable checkpoint: " + "; ".join(failures))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
