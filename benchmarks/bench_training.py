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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import RESULTS_DIR, LoadMonitor, machine_info, save_json
from training_step import (
    CLOCKS,
    build_engine,
    component_step,
    epoch_overhead,
    losses_step,
    param_counts,
    timed_step,
)
from training_summary import explain, report, summarise

from dcml_core.config import ExperimentConfig
from dcml_core.data import ensure_demo_dataset
from dcml_core.data_bundle import prepare_data
from dcml_core.engine import Engine
from dcml_core.head_names import DISCRIMINATIVE, DIVA_HEADS

# The reference default rho_decorrelation (one value, three directions) warns on every DiVA/DCML build.
warnings.filterwarnings("ignore", message=r"\d+ rho value\(s\) for \d+ directions")

METHODS: tuple[str, ...] = ("margin", "diva", "dcml")


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
        "features": [DISCRIMINATIVE] if method == "margin" else list(DIVA_HEADS),
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
        params = {m: param_counts(e) for m, e in engines.items()}
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
