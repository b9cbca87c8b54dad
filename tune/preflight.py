"""Checks of ``tune/run.py`` that go beyond one sampled configuration, all before Ray starts.

* every value a space can produce at its edges (each choice, each bound) builds a valid configuration, so a
  ``compos_num`` choice that does not divide by the heads fails now, not in trial 37 two days later;
* the disk under ``--storage`` can hold the checkpoints the sweep will keep (estimated from the model);
* no credentials ride on the command line (they would land in ``ps``, shell history and the MLflow tags);
* ``--resume`` only reads a sweep folder that belongs to the user (Tune's restore unpickles files from it).
"""

from __future__ import annotations

import copy
import io
import os
import shutil
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from dcml_core.config import ConfigError, ExperimentConfig
from search_spaces import SearchSpace, SearchSpaceError
from tune.cli import UsageError

# Tune keeps num_to_keep best checkpoints + always the latest; the driver uploads the best 3 to MLflow
CHECKPOINTS_KEPT_PER_TRIAL = 3
SAFETY = 1.2


def edge_values(domain: Domain) -> list[Any]:
    """The values that bound a distribution: every choice, or the lowest and highest value it can draw."""
    if isinstance(domain, Categorical):
        return list(domain.categories)
    if isinstance(domain, Integer):
        return [domain.lower, domain.upper - 1]  # tune.randint's upper bound is exclusive
    if isinstance(domain, Float):
        return [domain.lower, domain.upper]
    return []


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree[key]
    tree[leaf] = value


def check_space_edges(space: SearchSpace, seed: int = 0) -> int:
    """Build a configuration for each edge value of each sampled parameter (others as in one sample);
    returns how many were checked. The error names the parameter, its value and what is wrong."""
    base = space.sample(1, seed)[0]
    checked = 0
    for name, domain in space.distributions().items():
        for value in edge_values(domain):
            sample = copy.deepcopy(base)
            _set(sample, name, value)
            try:
                space.build_config(sample)
            except ConfigError as err:
                raise SearchSpaceError(
                    f"search space '{space.name}': {name} = {value!r} (one value it can draw) gives an invalid "
                    f"configuration: {err}. Narrow the range of {name} in {space.source or space.name}"
                ) from None
            checked += 1
    return checked


def checkpoint_bytes(cfg: ExperimentConfig, n_train_classes: int) -> int:
    """Estimated size of one trial checkpoint: model + objective state (key encoder, queue, betas) + the
    optimiser's state of every optimised parameter (Adam: two moments). Builds the model on CPU without weights
    (a fraction of a second); no optimiser is built (constructing one imports torch's compiler, 1.7 s here)."""
    from dcml_core.models import build_model
    from dcml_core.objective import build_objective
    from dcml_core.optim import param_groups, state_per_parameter

    model = build_model(
        method=cfg.model.method,
        arch=cfg.model.arch,
        embed_dim=cfg.model.embed_dim,
        features=cfg.model.features,
        pretrained="none",
        ensemble_num=cfg.model.ensemble_num,
        compos_num=cfg.model.compos_num,
    )
    objective = build_objective(cfg, model, n_train_classes, model.feature_dim)
    groups = param_groups(cfg.optim, model, objective.param_groups())
    optimised = sum(p.numel() * p.element_size() for g in groups for p in g["params"])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "objective": objective.state_dict()}, buffer)
    return buffer.getbuffer().nbytes + state_per_parameter(cfg.optim) * optimised


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_disk(storage: str, num_samples: int, per_checkpoint: int) -> int:
    """Raise :class:`UsageError` when the disk under a local ``storage`` cannot hold every kept checkpoint;
    returns the bytes needed (0 for remote storage, which is not checked)."""
    if "://" in storage and not storage.startswith("file://"):
        return 0
    path = Path(storage.removeprefix("file://"))
    existing = next(p for p in (path, *path.parents) if p.exists())
    needed = int(num_samples * CHECKPOINTS_KEPT_PER_TRIAL * per_checkpoint * SAFETY)
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise UsageError(
            f"too little free disk for the checkpoints under {path}: {num_samples} trials x up to "
            f"{CHECKPOINTS_KEPT_PER_TRIAL} kept checkpoints x about {_gb(per_checkpoint)} each (+20 %) = "
            f"{_gb(needed)}, but only {_gb(free)} is free; free some space, pass --storage on a larger disk, "
            "or lower --num-samples"
        )
    return needed


def check_no_credentials(uri: str, flag: str = "--mlflow-uri") -> None:
    """A URI with ``user:password@`` is refused: credentials come from the environment, as MLflow expects."""
    if "://" not in uri:
        return
    parts = urlsplit(uri)
    if parts.password is not None or (parts.username and parts.scheme.startswith("http")):
        safe = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
        raise UsageError(
            f"{flag} carries credentials; they would be visible in `ps`, the shell history and the sweep's "
            f"MLflow tags. Pass {flag} {safe} and set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) in the environment; for a database URI use a ~/.pgpass-style file"
        )


def check_own_folder(path: Path) -> None:
    """``--resume`` reads (and Tune unpickles) files of ``path``: it and its top-level files must belong to this
    user and must not be writable by every user (group-writable is allowed: shared project groups)."""
    uid = os.getuid()
    for item in [path, *sorted(path.iterdir())]:
        info = item.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise UsageError(f"refusing to resume from {path}: {item} is a symbolic link")
        if info.st_uid != uid:
            raise UsageError(
                f"refusing to resume from {path}: {item} belongs to user id {info.st_uid}, not to you "
                f"({uid}); Tune's restore unpickles these files, so only your own sweep folders are resumed"
            )
        if info.st_mode & stat.S_IWOTH:
            raise UsageError(
                f"refusing to resume from {path}: {item} is writable by every user (mode "
                f"{stat.filemode(info.st_mode)}); run `chmod o-w` on it if you trust its content"
            )
