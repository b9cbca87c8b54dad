"""Checkpoints are directories: ``state.pt`` (tensors and plain values, ``weights_only``-loadable) plus
``config.json``. Writes are atomic (temp file then rename) so a crash never leaves a half-written state."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, truncated or does not match the configuration."""


def save_checkpoint(directory: str | Path, state: dict[str, Any], config_json: str) -> Path:
    """Write ``state`` and the configuration into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
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
