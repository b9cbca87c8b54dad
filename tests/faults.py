"""Fault injection into the Ray workers of a real sweep, with no test-only branch in the production code.

:func:`fault_env` writes a ``sitecustomize.py`` into a folder that goes first on ``PYTHONPATH``; the sweep's
driver passes ``PYTHONPATH`` on to its Ray workers (``tune.cluster.worker_runtime_env``), so every worker runs it at
start-up. It installs an import hook that, once ``dcml_core.engine`` is loaded, wraps ``Engine.train_epoch``
with the fault plan below. Each trial that reaches its second epoch claims the next free fault (one file per
fault in the fault folder, created with ``O_EXCL``, holding the trial id), so every fault hits exactly one
trial and later trials run clean:

* ``kill``: before epoch 3 of the first attempt the worker sends itself SIGKILL;
* ``corrupt``: before epoch 3 of the first attempt the newest checkpoint's ``state.pt`` in the sweep's storage
  is cut in half, then the worker sends itself SIGKILL;
* ``nan``: before epoch 2 every model weight becomes NaN (the real loss check must catch it);
* ``oom``: before epoch 2 the model's forward raises ``torch.cuda.OutOfMemoryError`` (simulated on CPU);
* ``collapse``: from epoch 2 on, every image of an evaluated split gets the same embedding (what a collapsed
  network gives evaluation).
"""

from __future__ import annotations

import os
from pathlib import Path

FAULTS = ("kill", "corrupt", "nan", "oom", "collapse")

_SITECUSTOMIZE = """
import importlib.abc
import importlib.util
import sys


class _AfterEngineImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "dcml_core.engine":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            import fault_plan

            fault_plan.install(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterEngineImport())
"""

_PLAN = """
import os
import signal
from pathlib import Path

FAULT_DIR = Path({fault_dir!r})
SWEEP_DIR = Path({sweep_dir!r})
FAULTS = {faults!r}


def _trial_id():
    try:
        from ray import tune

        return tune.get_context().get_trial_id()
    except Exception:
        return None


def _claimed(trial):
    for kind in FAULTS:
        path = FAULT_DIR / kind
        if path.exists() and path.read_text() == trial:
            return kind
    for kind in FAULTS:
        try:
            fd = os.open(FAULT_DIR / kind, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.write(fd, trial.encode())
        os.close(fd)
        return kind
    return None


def _once(kind):
    try:
        os.close(os.open(FAULT_DIR / (kind + ".done"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _truncate_newest_checkpoint(trial):
    folders = sorted((SWEEP_DIR / ("trial_" + trial)).glob("checkpoint_*"))
    state = folders[-1] / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    (FAULT_DIR / "corrupted").write_text(str(folders[-1]))


def _inject(engine):
    import torch

    trial = _trial_id()
    if trial is None or engine.epoch < 1:
        return
    kind = _claimed(trial)
    if kind in ("kill", "corrupt") and engine.epoch == 2 and _once(kind):
        if kind == "corrupt":
            _truncate_newest_checkpoint(trial)
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "nan" and engine.epoch == 1:
        with torch.no_grad():
            for p in engine.model.parameters():
                p.fill_(float("nan"))
    elif kind == "oom" and engine.epoch == 1:
        def out_of_memory(*args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        engine.model.forward = out_of_memory
    elif kind == "collapse" and engine.epoch == 1:
        embed = engine.embed

        def one_point(split):
            heads, labels = embed(split)
            return {{name: h[:1].expand_as(h).clone() for name, h in heads.items()}}, labels

        engine.embed = one_point


def install(module):
    train_epoch = module.Engine.train_epoch

    def with_faults(self):
        _inject(self)
        return train_epoch(self)

    module.Engine.train_epoch = with_faults
"""


def fault_env(
    folder: Path, sweep_dir: Path, env: dict[str, str], faults: tuple[str, ...] = FAULTS
) -> dict[str, str]:
    """``env`` plus the fault hook on ``PYTHONPATH``; claims and markers go into ``folder``; only ``faults``
    (a subset of :data:`FAULTS`, claimed in that order) are injected."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    (folder / "fault_plan.py").write_text(
        _PLAN.format(fault_dir=str(folder), sweep_dir=str(sweep_dir), faults=tuple(faults))
    )
    path = [str(folder), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


def claims(folder: Path) -> dict[str, str]:
    """Fault -> the trial id that got it."""
    return {kind: (folder / kind).read_text() for kind in FAULTS if (folder / kind).exists()}
