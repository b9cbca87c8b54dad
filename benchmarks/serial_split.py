"""The exact split of a sweep's overhead when its trials run one at a time (``bench_sweep_overhead.py
--max-concurrent 1``): driver start, Ray start, sweep setup, worker starts between trials, trial setup (engine
build), checkpointing, driver/MLflow, from the driver's progress lines, the Ray session folder's creation time and
Ray's ``time_this_iter_s``/``time_total_s`` per result."""

from __future__ import annotations

import statistics
from typing import Any

from sweep_process import SweepRun


def _extras(rows: list[dict[str, Any]]) -> list[float]:
    """Per result: time_this_iter_s minus the trial's own train + eval time (setup, checkpoint, report)."""
    return [r["time_this_iter_s"] - r["time/train_s"] - r["time/eval_s"] for r in rows]


def breakdown(run: SweepRun) -> dict[str, Any]:
    """Split the sweep's wall time into the trials' own time and overhead components (serial trials)."""
    events = run.events()
    first = {}  # trial id -> time of its first event of each kind
    last_epoch, done = {}, {}
    for t, tid, kind, _ in events:
        first.setdefault((tid, kind), t)
        if kind == "epoch":
            last_epoch[tid] = t
        if kind in ("finished", "stopped", "FAILED"):
            done[tid] = t
    order = sorted(run.results, key=lambda tid: first.get((tid, "started"), float("inf")))
    later = [e for rows in run.results.values() for e in _extras(rows)[1:]]
    ckpt_per_epoch = statistics.median(later) if later else 0.0
    announce = next((t for t, ln in run.lines if ln.startswith("Sweep '")), None)
    t_first_start = first.get((order[0], "started")) if order else None
    comp: dict[str, float] = {
        "driver_start_s": run.ray_session_s if run.ray_session_s is not None else 0.0,
        "ray_start_s": (announce - (run.ray_session_s or 0.0)) if announce is not None else 0.0,
        "sweep_setup_s": (t_first_start - announce) if None not in (t_first_start, announce) else 0.0,
        "worker_start_s": 0.0,
        "trial_setup_s": 0.0,
        "checkpoint_s": 0.0,
        "driver_results_s": 0.0,
        "end_of_sweep_s": run.wall_s - max(done.values()) if done else 0.0,
    }
    per_trial = []
    prev_done = None
    for tid in order:
        rows = run.results[tid]
        extras = _extras(rows)
        ckpt = ckpt_per_epoch * len(rows)
        setup = sum(extras) - ckpt
        span = done[tid] - first[(tid, "started")]
        driver = span - rows[-1]["time_total_s"]
        worker = first[(tid, "started")] - prev_done if prev_done is not None else 0.0
        prev_done = done[tid]
        comp["worker_start_s"] += worker
        comp["trial_setup_s"] += setup
        comp["checkpoint_s"] += ckpt
        comp["driver_results_s"] += driver
        per_trial.append({
            "trial": tid, "epochs": len(rows),
            "own_s": sum(r["time/train_s"] + r["time/eval_s"] for r in rows),
            "worker_start_s": worker, "setup_s": setup, "checkpoint_s": ckpt, "driver_s": driver,
            "first_iter_extra_s": extras[0], "pid": sorted({r["pid"] for r in rows}),
            "val_recall_at_1": [round(r["val/recall_at_1"], 4) for r in rows],
        })  # fmt: skip
    own = run.own_s()
    accounted = own + sum(comp.values())
    return {
        "components_s": {k: round(v, 3) for k, v in comp.items()},
        "unaccounted_s": round(run.wall_s - accounted, 3),
        "checkpoint_per_epoch_s": round(ckpt_per_epoch, 3),
        "per_trial": per_trial,
    }


GROUPS = {  # the categories -> the serial split's components
    "Ray start (driver imports + validation, ray.init)": ("driver_start_s", "ray_start_s"),
    "sweep setup (cluster check, MLflow parent run, Tuner, first worker)": ("sweep_setup_s",),
    "per-trial setup (worker start, data/model build)": ("worker_start_s", "trial_setup_s"),
    "checkpointing (engine.save + copy to storage)": ("checkpoint_s",),
    "driver/MLflow (result handling, end of sweep)": ("driver_results_s", "end_of_sweep_s"),
}


def serial_rows(res: dict[str, Any]) -> list[str]:
    wall, comp = res["wall_s"], res["breakdown"]["components_s"]
    rows = [f"  serial split:{'':42s} {'seconds':>8s} {'% wall':>7s}"]
    for label, keys in GROUPS.items():
        s = sum(comp[k] for k in keys)
        rows.append(f"  {label:55s} {s:8.1f} {100 * s / wall:6.1f}%")
        rows += [f"    {k:53s} {comp[k]:8.1f} {100 * comp[k] / wall:6.1f}%" for k in keys if len(keys) > 1]
    rows.append(f"  {'unaccounted':55s} {res['breakdown']['unaccounted_s']:8.1f}")
    return rows


