"""Replay Ray's ASHA on the curves of a sweep whose trials all ran to the end, to choose a space's rungs.

A FIFO sweep (every trial to its last epoch, e.g. the one ``bench_early_stopping.py --keep`` leaves behind)
records every configuration's validation Recall@1 and device time (``time/train_s + time/eval_s``) at every
epoch. Feeding those results, trial after trial, to a real ``ray.tune.schedulers.ASHAScheduler`` shows what
ASHA with a given grace period and reduction factor would have stopped, without training again: the device
time it would have spent (ratio to running everything) and the gap between the best validation Recall@1 it
would have kept and the best of all. Trials arrive one at a time, as in the benchmark's ``--max-concurrent 1``
sweeps; with more at a time Ray's asynchronous ASHA decides on the results in the order they arrive.

The recorded order is replayed first (with ``--asha DIR``, the ASHA sweep of the same configurations, the
replay's epochs per trial are checked against what ASHA really did), then ``--orders`` random orders of the
same trials, since a sweep's outcome depends on which configurations come first.

Usage::

    python benchmarks/bench_early_stopping.py --num-samples 24 --keep     # prints the folder it kept
    python benchmarks/replay_asha.py --fifo /tmp/bes_XXXX/ray/es-fifo --asha /tmp/bes_XXXX/ray/es-asha
    python benchmarks/replay_asha.py --fifo DIR --schedules 1x3 2x3 3x2 --orders 500
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path
from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from dcml_core.metric_names import EPOCH, OBJECTIVE

Curve = dict[int, tuple[float, float]]  # epoch -> (val Recall@1, device seconds of that epoch)
DEFAULT_SCHEDULES = ("1x3", "2x3", "2x2", "3x3", "1x4", "2x4")


def read_curves(sweep: Path) -> dict[int, Curve]:
    """Trial number (Tune's ``_00003`` suffix, the sampling order) -> its curve, from each ``result.json``."""
    curves: dict[int, Curve] = {}
    for folder in sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "result.json").is_file()):
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines() if line.strip()]
        curves[int(folder.name.split("_")[-1])] = {
            int(r[EPOCH]): (float(r[OBJECTIVE]), float(r["time/train_s"]) + float(r["time/eval_s"]))
            for r in rows
            if OBJECTIVE in r
        }
    if not curves:
        raise SystemExit(f"no trial folders with result.json under {sweep}: pass a sweep folder (runs/ray/<name>)")
    return curves


def replay(curves: dict[int, Curve], order: list[int], grace: int, factor: int, max_t: int) -> dict[int, int]:
    """Feed the trials in ``order`` to a fresh ASHAScheduler; return trial -> the last epoch it would have run."""
    scheduler = ASHAScheduler(
        time_attr=EPOCH, metric=OBJECTIVE, mode="max", grace_period=grace, reduction_factor=factor, max_t=max_t
    )
    ran = {}
    for index in order:
        trial = SimpleNamespace(trial_id=str(index))
        scheduler.on_trial_add(None, trial)
        last = None
        for epoch in sorted(curves[index]):
            last = {EPOCH: epoch, OBJECTIVE: curves[index][epoch][0]}
            if scheduler.on_trial_result(None, trial, last) == TrialScheduler.STOP:
                break
        scheduler.on_trial_complete(None, trial, last)
        ran[index] = last[EPOCH]
    return ran


def outcome(curves: dict[int, Curve], ran: dict[int, int]) -> tuple[float, float]:
    """Device time ratio to running every trial to the end, and the best-value gap (all - kept), in points."""
    device = sum(t for i, c in curves.items() for e, (_, t) in c.items() if e <= ran[i])
    total = sum(t for c in curves.values() for _, t in c.values())
    best_all = max(v for c in curves.values() for e, (v, _) in c.items() if e > 0)  # epoch 0 is never selected
    kept = max((v for i, c in curves.items() for e, (v, _) in c.items() if 0 < e <= ran[i]), default=0.0)
    return device / total, 100 * (best_all - kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fifo", type=Path, required=True, help="a sweep folder whose trials all ran to the end")
    p.add_argument("--asha", type=Path, help="the ASHA sweep of the same configurations, to check the replay")
    p.add_argument("--schedules", nargs="+", default=list(DEFAULT_SCHEDULES), help="GRACExFACTOR, e.g. 1x3")
    p.add_argument("--orders", type=int, default=200, help="random trial orders replayed per schedule")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    curves = read_curves(args.fifo)
    max_t = max(max(c) for c in curves.values())
    recorded = sorted(curves)
    print(f"{len(curves)} trials, {max_t} epochs, from {args.fifo}")
    if args.asha:
        real = {i: max(c) for i, c in read_curves(args.asha).items()}
        grace, factor = (int(x) for x in args.schedules[0].split("x"))
        same = replay(curves, recorded, grace, factor, max_t) == real
        print(f"replay of {args.schedules[0]} in the recorded order matches the ASHA sweep's epochs per trial: {same}")
    rng = random.Random(args.seed)
    print(f"{'grace x factor':>15} {'device (recorded order)':>24} {'gap':>6}   over {args.orders} random orders:"
          " device mean, gap median, P(gap > 1 pt)")  # fmt: skip
    for schedule in args.schedules:
        grace, factor = (int(x) for x in schedule.split("x"))
        device, gap = outcome(curves, replay(curves, recorded, grace, factor, max_t))
        runs = [outcome(curves, replay(curves, rng.sample(recorded, len(recorded)), grace, factor, max_t))
                for _ in range(args.orders)]  # fmt: skip
        gaps = [g for _, g in runs]
        print(f"{schedule:>15} {device:>24.2f} {gap:>+6.2f}   {statistics.mean(d for d, _ in runs):.2f}, "
              f"{statistics.median(gaps):+.2f}, {sum(g > 1 for g in gaps) / len(gaps):.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
