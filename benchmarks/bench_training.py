"""Training-step time of the margin baseline, DiVA (4 heads) and DCML (4 heads) through the real ``Engine``.

Each method gets its own :class:`dcml_core.engine.Engine` (same backbone, batch, seed). A step is one call of
``Engine.train_epoch`` over a one-batch "epoch" whose batch was decoded and augmented before timing (its loader
is replaced by :class:`PrebuiltLoaders`), so a step is exactly what ``train_epoch`` does per iteration:
forward, key-encoder forward of view B, losses, backward, optimiser step, EMA update and enqueue, plus the
per-epoch bookkeeping, which is measured separately (an empty epoch) and is negligible. Warm-up steps (which
include the key-queue pre-fill) are not timed. The methods are interleaved round-robin, with the order rotated
every round, so machine load affects all of them alike; ratios are given both as ratio of medians and as the
median of per-round ratios. A second, instrumented pass times the components of a step (same calls, same
order as ``train_epoch``, with a clock between them) to explain the ratios. The images come from a private
copy of the demo data set (4 images per class, 64 px; scaled up by the transforms for ``--size 224``) built in a
temporary folder. Usage::

    python benchmarks/bench_training.py                      # ResNet-18, 64 px, batch 32, embed_dim 128
    python benchmarks/bench_training.py --arch resnet50_frozen_normalize --size 224 --batch 8
    python benchmarks/bench_training.py --quick              # smoke run, results/training_quick.json

Results: ``benchmarks/results/training.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS_DIR, LoadMonitor, busy_warning, describe_load, machine_info, save_json, summarize

from dcml_core.config import ExperimentConfig
from dcml_core.data import ensure_demo_dataset
from dcml_core.data_bundle import prepare_data
from dcml_core.engine import Engine

# The reference default rho_decorrelation (one value, three directions) warns on every DiVA/DCML build.
warnings.filterwarnings("ignore", message=r"\d+ rho value\(s\) for \d+ directions")

METHODS: tuple[str, ...] = ("margin", "diva", "dcml")
FOUR_HEADS = ["discriminative", "selfsimilarity", "shared", "intra"]
COMPONENTS: tuple[str, ...] = ("forward", "keys", "loss", "backward", "optimizer", "ema", "enqueue")
CLOCKS: tuple[str, ...] = ("wall", "cpu")  # time.perf_counter, time.process_time (all threads)


@dataclass(frozen=True)
class TrainingSettings:
    """What to benchmark and how often; the defaults are the foundation-issue setting."""

    arch: str = "resnet18_frozen_normalize"
    size: int = 64
    batch: int = 32
    embed_dim: int = 128
    ensemble_num: int = 4
    compos_num: int = 4
    key_batches: int = 50  # DiVA's moco_n_key_batches: queue of key_batches * batch keys
    warmup: int = 3
    rounds: int = 20
    component_rounds: int = 10
    pool: int = 4  # distinct pre-built batches, used in turn
    device: str = "auto"
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError for settings that cannot run, before any data or model is built."""
        if self.size < 32:
            raise ValueError(
                f"--size {self.size} is too small for a ResNet trunk; use >= 32 (e.g. 64 or 224)"
            )
        if self.batch < 4 or self.batch % 2:
            raise ValueError(f"--batch {self.batch} must be an even number >= 4 (2 samples per class)")
        for name in ("warmup", "rounds", "component_rounds", "pool", "key_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for method in METHODS:
            make_config(method, self, root="unused")  # ConfigError (a ValueError): arch, embed_dim, device


def make_config(method: str, s: TrainingSettings, root: str) -> ExperimentConfig:
    """The run configuration of one method on the benchmark's demo data (validated)."""
    model: dict[str, Any] = {
        "method": method,
        "arch": s.arch,
        "embed_dim": s.embed_dim,
        "pretrained": "none",
        "features": ["discriminative"] if method == "margin" else FOUR_HEADS,
    }
    if method == "dcml":
        model.update(ensemble_num=s.ensemble_num, compos_num=s.compos_num)
    return ExperimentConfig.from_dict(
        {
            "data": {
                "dataset": "demo",
                "root": root,
                "batch_size": s.batch,
                "num_workers": 0,
                "crop_size": s.size,
            },
            "model": model,
            "diva": {"moco_n_key_batches": s.key_batches},
            "seed": s.seed,
            "device": s.device,
        }
    )


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
    if obj.key_encoder is not None and keys is not None:  # Objective.after_step, split in its two parts
        obj.key_encoder.update(model)
        clock.lap("ema")
        obj.queue.enqueue(keys)
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


def _param_counts(engine: Engine) -> dict[str, int]:
    obj = engine.objective
    key = sum(p.numel() for p in obj.key_encoder.parameters()) if obj.key_encoder is not None else 0
    optimised = sum(p.numel() for g in engine.optimizer.param_groups for p in g["params"])
    return {
        "model": sum(p.numel() for p in engine.model.parameters()),
        "optimised": optimised,
        "key_encoder": key,
    }


def _rotated(methods: Sequence[str], r: int) -> list[str]:
    k = r % len(methods)
    return [*methods[k:], *methods[:k]]


def measure(engines: dict[str, Engine], s: TrainingSettings) -> dict[str, Any]:
    """Warm-up, interleaved step rounds, interleaved component rounds; raw samples per method."""
    names = list(engines)
    for r in range(s.warmup):
        for m in _rotated(names, r):
            timed_step(engines[m])  # the first DiVA/DCML step also pre-fills the key queue
    steps: dict[str, dict[str, list[float]]] = {c: {m: [] for m in names} for c in CLOCKS}
    for r in range(s.rounds):
        for m in _rotated(names, r):
            for clock, value in zip(CLOCKS, timed_step(engines[m])):
                steps[clock][m].append(value)
    parts: dict[str, list[dict[str, dict[str, float]]]] = {m: [] for m in names}
    losses: dict[str, list[dict[str, float]]] = {m: [] for m in names}
    for r in range(s.component_rounds):
        for m in _rotated(names, r):
            parts[m].append(component_step(engines[m]))
            losses[m].append(losses_step(engines[m]))
    overhead = {m: epoch_overhead(engines[m]) for m in names}
    return {"steps": steps, "parts": parts, "losses": losses, "overhead": overhead}


def _ratios(times: list[float], base: list[float]) -> dict[str, Any]:
    paired = np.asarray(times) / np.asarray(base)
    return {
        "ratio_of_medians": float(np.median(times) / np.median(base)),
        "ratio_paired_median": float(np.median(paired)),
        "ratio_paired_q1_q3": [float(np.percentile(paired, 25)), float(np.percentile(paired, 75))],
    }


def summarise(raw: dict[str, Any], base: str = "margin") -> dict[str, Any]:
    """Per method and clock: step summary, ratios to ``base``, component medians, losses-alone median."""
    out: dict[str, Any] = {}
    for m in raw["steps"]["wall"]:
        out[m] = {"epoch_overhead_s": raw["overhead"][m]}
        for clock in CLOCKS:
            times = raw["steps"][clock][m]
            comps = {c: float(np.median([p[clock][c] for p in raw["parts"][m]])) for c in COMPONENTS}
            out[m][clock] = {
                "step": summarize(times),
                **_ratios(times, raw["steps"][clock][base]),
                "components_median_s": comps,
                "components_sum_s": float(sum(comps.values())),
                "losses_fwd_bwd_median_s": float(np.median([x[clock] for x in raw["losses"][m]])),
            }
    return out


def explain(methods: dict[str, Any], clock: str, base: str = "margin") -> dict[str, Any]:
    """Where the extra time of each method over ``base`` goes, per component, in ms and in base steps."""
    b = methods[base][clock]
    base_step = b["step"]["median_s"]
    diva = methods["diva"][clock]["components_median_s"] if "diva" in methods else b["components_median_s"]
    out: dict[str, Any] = {
        "key_forward_over_baseline_step": diva["keys"] / base_step,
        "key_forward_over_query_forward": diva["keys"] / max(diva["forward"], 1e-12),
    }
    for m, r in methods.items():
        if m == base:
            continue
        r = r[clock]
        delta = {c: r["components_median_s"][c] - b["components_median_s"][c] for c in COMPONENTS}
        out[m] = {
            "extra_ms": {c: round(1e3 * v, 2) for c, v in delta.items()},
            "extra_in_baseline_steps": {c: round(v / base_step, 3) for c, v in delta.items()},
            "predicted_ratio_from_components": r["components_sum_s"] / b["components_sum_s"],
        }
    return out


def run(s: TrainingSettings) -> dict[str, Any]:
    """Build the three engines on a private demo data set, measure, and return the JSON-ready result."""
    s.check()
    with tempfile.TemporaryDirectory(prefix="dcml-bench-") as tmp:
        root = str(Path(tmp) / "demo")
        cfgs = {m: make_config(m, s, root) for m in METHODS}  # config errors before any work
        ensure_demo_dataset(root, n_per_class=4, image_size=64)
        data = prepare_data(cfgs["margin"])
        engines = {m: build_engine(cfg, data, s.pool) for m, cfg in cfgs.items()}
        device = str(engines["margin"].device)
        monitor = LoadMonitor()
        raw = measure(engines, s)
        load = monitor.stop()
        params = {m: _param_counts(e) for m, e in engines.items()}
        del engines
    methods = summarise(raw)
    for m in methods:
        methods[m]["params"] = params[m]
    return {
        "benchmark": "training_step",
        "machine": machine_info(device),
        "settings": dataclasses.asdict(s),
        "load": load,
        "methods": methods,
        "explanation": {clock: explain(methods, clock) for clock in CLOCKS},
    }


def report(res: dict[str, Any]) -> None:
    """Print the medians, ratios and the component breakdown."""
    s, mach, methods = res["settings"], res["machine"], res["methods"]
    print(
        f"\ntraining step: {s['arch']}, {s['size']} px, batch {s['batch']}, embed_dim {s['embed_dim']}; "
        f"{mach['device']}, {mach['torch_threads']} torch threads, torch {mach['torch']}; "
        f"{s['rounds']} interleaved rounds after {s['warmup']} warm-up"
    )
    print(f"  {describe_load(res['load'])}")
    print(f"  {'':<7} {'wall clock':^49} | {'process CPU time (all threads)':^49}")
    head = f"{'median ms':>9} {'q1-q3 ms':>13} {'ratio (medians)':>15} {'(paired)':>9}"
    print(f"  {'method':<7} {head} | {head}")
    for m, r in methods.items():
        cells = []
        for clock in CLOCKS:
            st, x = r[clock]["step"], r[clock]
            cells.append(
                f"{1e3 * st['median_s']:9.1f} {1e3 * st['q1_s']:6.0f}-{1e3 * st['q3_s']:<6.0f} "
                f"{x['ratio_of_medians']:14.2f}x {x['ratio_paired_median']:8.2f}x"
            )
        print(f"  {m:<7} {cells[0]} | {cells[1]}")
    for clock in CLOCKS:
        _report_components(res, clock)
    overhead = max(r["epoch_overhead_s"] for r in methods.values())
    print(f"  per-epoch bookkeeping included in each timed step: <= {1e3 * overhead:.2f} ms")
    warning = busy_warning(res["load"])
    if warning:
        print(f"  {warning}")


def _report_components(res: dict[str, Any], clock: str) -> None:
    methods, ex = res["methods"], res["explanation"][clock]
    print(f"  components ({clock}), median ms over {res['settings']['component_rounds']} instrumented steps:")
    print("  " + f"{'method':<7}" + "".join(f"{c:>10}" for c in COMPONENTS) + f"{'sum':>9}{'losses f+b':>12}")
    for m, r in methods.items():
        c = r[clock]["components_median_s"]
        cells = "".join(f"{1e3 * c[k]:10.1f}" for k in COMPONENTS)
        tail = f"{1e3 * r[clock]['components_sum_s']:9.1f}{1e3 * r[clock]['losses_fwd_bwd_median_s']:12.1f}"
        print(f"  {m:<7}{cells}{tail}")
    print(
        f"    key-encoder forward = {ex['key_forward_over_baseline_step']:.2f} baseline steps "
        f"({ex['key_forward_over_query_forward']:.2f}x the query forward with autograd)"
    )
    for m in methods:
        if m in ex:
            parts = ", ".join(f"{c} {v:+.2f}" for c, v in ex[m]["extra_in_baseline_steps"].items())
            print(
                f"    {m} extra, in baseline steps: {parts} "
                f"(components predict {ex[m]['predicted_ratio_from_components']:.2f}x)"
            )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command-line options of :class:`TrainingSettings`."""
    d = TrainingSettings()
    p.add_argument(
        "--arch", default=d.arch, help="backbone, e.g. resnet18_frozen_normalize, resnet50_frozen_normalize"
    )
    p.add_argument("--size", type=int, default=d.size, help="crop size in pixels")
    p.add_argument("--batch", type=int, default=d.batch, help="batch size (2 images per class)")
    p.add_argument("--embed-dim", type=int, default=d.embed_dim)
    p.add_argument(
        "--key-batches", type=int, default=d.key_batches, help="DiVA moco_n_key_batches (queue size)"
    )
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps per method")
    p.add_argument("--rounds", type=int, default=d.rounds, help="timed round-robin steps per method")
    p.add_argument("--component-rounds", type=int, default=d.component_rounds)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    """TrainingSettings from parsed arguments; ``--quick`` shrinks the run to a smoke test."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    s = TrainingSettings(
        arch=args.arch,
        size=args.size,
        batch=args.batch,
        embed_dim=args.embed_dim,
        key_batches=args.key_batches,
        warmup=args.warmup,
        rounds=args.rounds,
        component_rounds=args.component_rounds,
        device=args.device,
    )
    if args.quick:
        s = dataclasses.replace(
            s, warmup=1, rounds=3, component_rounds=2, pool=2, key_batches=min(s.key_batches, 4)
        )
    return s


def main() -> None:
    """Run the benchmark, print it and save the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up, 3 rounds, queue of 4 batches")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default results/training[_quick].json)")
    args = p.parse_args()
    try:
        settings = settings_from_args(args)
        settings.check()
    except ValueError as err:
        p.error(str(err))
    res = run(settings)
    report(res)
    out = args.out or RESULTS_DIR / ("training_quick.json" if args.quick else "training.json")
    print(f"\nsaved {save_json(out, res)}")


if __name__ == "__main__":
    main()
