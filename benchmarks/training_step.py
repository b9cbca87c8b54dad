"""How bench_training.py times one training step of an :class:`Engine`: pre-built batches, a timed
``train_epoch`` over a one-batch epoch, and the same step instrumented part by part."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.objective import SelfSimilarityHead

COMPONENTS: tuple[str, ...] = ("forward", "keys", "loss", "backward", "optimizer", "ema", "enqueue")
CLOCKS: tuple[str, ...] = ("wall", "cpu")  # time.perf_counter, time.process_time (all threads)


class PrebuiltLoaders:
    """Stands in for ``Engine.loaders``: each ``train_loader()`` is a one-batch epoch of a pre-built batch."""

    def __init__(self, real: Any, batches: list[tuple]) -> None:
        self.real, self.batches, self.served, self.empty = real, batches, 0, False

    def train_loader(self) -> list[tuple]:
        if self.empty:
            return []
        batch = self.batches[self.served % len(self.batches)]
        self.served += 1
        return [batch]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def build_engine(cfg: ExperimentConfig, data: Any, pool: int) -> Engine:
    """An Engine whose training batches are ``pool`` batches of its real loader, decoded once, on the device."""
    engine = Engine(cfg, data=data)
    batches: list[tuple] = []
    while len(batches) < pool:
        for batch in engine.loaders.train_loader():
            images = [t.to(engine.device) for t in (batch[0], *batch[3:])]  # view A[, view B]
            batches.append((images[0], batch[1].to(engine.device), batch[2], *images[1:]))
            if len(batches) == pool:
                break
    engine.loaders = PrebuiltLoaders(engine.loaders, batches)
    return engine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(engine: Engine) -> tuple[float, float]:
    """Wall-clock and process-CPU seconds of one ``Engine.train_epoch`` over a one-batch epoch."""
    _sync(engine.device)
    start, cpu = time.perf_counter(), time.process_time()
    engine.train_epoch()
    _sync(engine.device)
    return time.perf_counter() - start, time.process_time() - cpu


class _Clock:
    """Wall and process-CPU time between successive ``lap`` calls."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.laps = {clock: dict.fromkeys(COMPONENTS, 0.0) for clock in CLOCKS}
        _sync(device)
        self.last = {"wall": time.perf_counter(), "cpu": time.process_time()}

    def lap(self, name: str) -> None:
        _sync(self.device)
        now = {"wall": time.perf_counter(), "cpu": time.process_time()}
        for clock in CLOCKS:
            self.laps[clock][name] = now[clock] - self.last[clock]
        self.last = now


def component_step(engine: Engine) -> dict[str, dict[str, float]]:
    """One iteration of ``Engine.train_epoch``'s loop (same calls, same order) with the time of each part."""
    model, obj, dev = engine.model, engine.objective, engine.device
    model.train()
    obj.train()
    batch = engine.loaders.train_loader()[0]
    clock = _Clock(dev)
    images, labels, indices = engine._to_device(batch[0]), batch[1].to(dev), batch[2]
    with engine._autocast():
        heads, feats, aux = model(images)
        clock.lap("forward")
        keys = obj.keys(engine._to_device(batch[3])) if len(batch) > 3 else None
        clock.lap("keys")
    loss, _ = obj(heads, feats, aux, labels, indices, keys)
    bool(torch.isfinite(loss))
    clock.lap("loss")
    engine.optimizer.zero_grad(set_to_none=True)
    engine.scaler.scale(loss).backward()
    clock.lap("backward")
    engine.scaler.step(engine.optimizer)
    engine.scaler.update()
    clock.lap("optimizer")
    moco = obj.terms[SelfSimilarityHead.name] if SelfSimilarityHead.name in obj.terms else None
    if moco is not None and keys is not None:  # Objective.after_step of the MoCo term, split in its two parts
        moco.key_encoder.update(model)
        clock.lap("ema")
        moco.queue.enqueue(keys)
        clock.lap("enqueue")
    return clock.laps


def losses_step(engine: Engine) -> dict[str, float]:
    """Wall/CPU seconds of the objective's forward + backward on detached network outputs: the losses alone."""
    model, obj = engine.model, engine.objective
    batch = engine.loaders.train_loader()[0]
    with torch.no_grad(), engine._autocast():
        heads, feats, aux = model(engine._to_device(batch[0]))
        keys = obj.keys(engine._to_device(batch[3])) if len(batch) > 3 else None
    heads = {k: v.detach().requires_grad_() for k, v in heads.items()}
    aux = {k: v.detach().requires_grad_() for k, v in aux.items()}
    clock = _Clock(engine.device)
    loss, _ = obj(heads, feats.detach(), aux, batch[1], batch[2], keys)
    loss.backward()
    clock.lap("loss")
    obj.zero_grad(set_to_none=True)
    return {c: clock.laps[c]["loss"] for c in CLOCKS}


def epoch_overhead(engine: Engine, repeats: int = 5) -> float:
    """Median seconds of ``train_epoch`` over an empty epoch (the per-epoch bookkeeping in each timed step)."""
    engine.loaders.empty = True
    times = [timed_step(engine)[0] for _ in range(repeats)]
    engine.loaders.empty = False
    return float(np.median(times))


def param_counts(engine: Engine) -> dict[str, int]:
    terms = engine.objective.terms
    moco = terms[SelfSimilarityHead.name] if SelfSimilarityHead.name in terms else None
    key = sum(p.numel() for p in moco.key_encoder.parameters()) if moco is not None else 0
    optimised = sum(p.numel() for g in engine.optimizer.param_groups for p in g["params"])
    return {
        "model": sum(p.numel() for p in engine.model.parameters()),
        "optimised": optimised,
        "key_encoder": key,
    }
