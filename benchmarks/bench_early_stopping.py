"""What ASHA saves on the demo sweep: the same sampled configurations run with ASHA and without (FIFO).

Two sweeps of the ``demo`` space with ``--search random --seed S`` (same seed, so the same
configurations, checked trial by trial from Ray's ``params.json``): one with ``--scheduler asha``, one with
``--scheduler fifo``, run one after the other as subprocesses (``sweep_process.run_sweep``: own
storage, MLflow store and Ray temp folder, ``OMP_WAIT_POLICY=PASSIVE``; ``--max-concurrent 1`` by default so
trials do not share the cores and ASHA's decisions do not depend on timing). Measured in the same run:

* device time of each sweep: the sum of the trials' ``time/train_s + time/eval_s`` over all reported epochs,
  and the ratio ASHA / FIFO (time saved = 1 - ratio); epochs run; wall time;
* best validation Recall@1 (``val/recall_at_1``, any trial, any epoch) of each, and the gap FIFO - ASHA;
  whether ASHA ran FIFO's best configuration to the end;
* reproducibility: the largest difference of ``val/recall_at_1`` between the two runs of a configuration
  at the epochs both ran (0 when training is deterministic);
* rank agreement at each ASHA rung: Spearman's rho between the validation Recall@1 ASHA saw at the rung and the
  final value (best over all epochs) of the same configurations run to the end by FIFO.

Epoch 0 (the starting network, reported before training) counts as device time but never as a best value.

The demo data set is built by a ``--dry-run`` first (warm cache). Usage::

    python benchmarks/bench_early_stopping.py                  # the demo's 16 trials x 12 epochs, seed 0
    python benchmarks/bench_early_stopping.py --num-samples 24 --keep   # keep the sweeps for replay_asha.py
    python benchmarks/bench_early_stopping.py --num-samples 16 --seed 3
    python benchmarks/bench_early_stopping.py --quick          # 3 trials x 2 epochs

Results: ``benchmarks/results/early_stopping.json`` (``_quick`` suffix with ``--quick``).
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_sweep_overhead import breakdown
from common import RESULTS_DIR, LoadMonitor, describe_load, machine_info, save_json
from scipy import stats
from sweep_process import SweepRun, child_env, run_sweep, warm_up, with_sweep_cpu

import search_spaces
from dcml_core.metric_names import EPOCH, OBJECTIVE

SCHEDULERS = ("asha", "fifo")


def by_index(run: SweepRun) -> dict[int, str]:
    """Trial number (the ``_00003`` suffix Tune gives trials in sampling order) -> trial id."""
    return {int(tid.rsplit("_", 1)[1]): tid for tid in run.results}


def compare_configs(runs: dict[str, SweepRun]) -> dict[str, Any]:
    """Whether trial ``i`` of each run got the same configuration (Ray's ``params.json``)."""
    a, f = by_index(runs["asha"]), by_index(runs["fifo"])
    common = sorted(set(a) & set(f))
    same = [i for i in common if runs["asha"].configs[a[i]] == runs["fifo"].configs[f[i]]]
    return {"trials": len(common), "identical": len(same), "all_identical": len(same) == len(a) == len(f)}


def best_of(run: SweepRun) -> tuple[float, int, int]:
    """(best val Recall@1 over all trials and epochs, trial number, epoch)."""
    best = (-math.inf, -1, 0)
    for i, tid in by_index(run).items():
        for r in run.results[tid]:
            if r[EPOCH] >= 1 and r[OBJECTIVE] > best[0]:
                best = (r[OBJECTIVE], i, r[EPOCH])
    return best


def final_value(rows: list[dict[str, Any]]) -> float:
    """Best validation Recall@1 over the trained epochs of one trial."""
    return max((r[OBJECTIVE] for r in rows if r[EPOCH] >= 1), default=math.nan)


def rung_agreement(runs: dict[str, SweepRun], rungs: list[int]) -> list[dict[str, Any]]:
    """Per rung: Spearman's rho between ASHA's view at the rung and FIFO's final values, same configurations."""
    a, f = by_index(runs["asha"]), by_index(runs["fifo"])
    out = []
    for rung in rungs:
        pairs = []
        for i in sorted(set(a) & set(f)):
            seen = [r[OBJECTIVE] for r in runs["asha"].results[a[i]] if r[EPOCH] == rung]
            if seen:
                pairs.append((seen[0], final_value(runs["fifo"].results[f[i]])))
        rho = stats.spearmanr(*zip(*pairs)).statistic if len(pairs) > 2 else math.nan
        out.append({"rung": rung, "trials": len(pairs), "spearman": float(rho)})
    return out


def max_metric_diff(runs: dict[str, SweepRun]) -> float:
    """Largest |val R@1 (ASHA run) - val R@1 (FIFO run)| for the same configuration at the same epoch."""
    a, f = by_index(runs["asha"]), by_index(runs["fifo"])
    diffs = [0.0]
    for i in set(a) & set(f):
        fifo_rows = {r[EPOCH]: r[OBJECTIVE] for r in runs["fifo"].results[f[i]]}
        for r in runs["asha"].results[a[i]]:
            if r[EPOCH] in fifo_rows:
                diffs.append(abs(r[OBJECTIVE] - fifo_rows[r[EPOCH]]))
    return max(diffs)


def summarize_run(run: SweepRun) -> dict[str, Any]:
    """Device time, epochs, wall time and best objective of one sweep."""
    best, idx, epoch = best_of(run)
    ids = by_index(run)
    return {
        "command": " ".join(run.command),
        "device_s": run.own_s(),
        "trial_time_s": sum(rows[-1]["time_total_s"] for rows in run.results.values()),
        "wall_s": run.wall_s,
        "epochs": run.epochs(),
        "trials": len(run.results),
        "epochs_per_trial": [max(r[EPOCH] for r in run.results[ids[i]]) for i in sorted(ids)],
        "best_val_recall_at_1_per_trial": [final_value(run.results[ids[i]]) for i in sorted(ids)],
        "best_val_recall_at_1": best,
        "best_trial": idx,
        "best_epoch": epoch,
        "overhead": (run.wall_s - run.own_s()) / run.wall_s,  # as in bench_sweep_overhead.py
        "overhead_components_s": breakdown(run)["components_s"] if run.results else {},
    }


def table(res: dict[str, Any]) -> str:
    a, f = res["asha"], res["fifo"]
    rows = [
        ("device time (train + eval), s", f"{a['device_s']:.0f}", f"{f['device_s']:.0f}",
         f"{res['device_ratio']:.2f}"),
        ("trial time (incl. setup, checkpoints), s", f"{a['trial_time_s']:.0f}", f"{f['trial_time_s']:.0f}",
         f"{a['trial_time_s'] / f['trial_time_s']:.2f}"),
        ("sweep wall time, s", f"{a['wall_s']:.0f}", f"{f['wall_s']:.0f}",
         f"{a['wall_s'] / f['wall_s']:.2f}"),
        ("sweep overhead (wall - device) / wall", f"{100 * a['overhead']:.0f} %",
         f"{100 * f['overhead']:.0f} %", ""),
        ("epochs run", str(a["epochs"]), str(f["epochs"]), f"{a['epochs'] / f['epochs']:.2f}"),
        ("best val Recall@1", f"{a['best_val_recall_at_1']:.4f}", f"{f['best_val_recall_at_1']:.4f}",
         f"gap {res['recall_gap']:+.4f}"),
        ("best trial (epoch)", f"{a['best_trial']} ({a['best_epoch']})",
         f"{f['best_trial']} ({f['best_epoch']})", ""),
    ]  # fmt: skip
    w = max(len(r[0]) for r in rows)
    out = [f"  {'':{w}s} {'ASHA':>10s} {'FIFO':>10s} {'ASHA/FIFO':>12s}"]
    out += [f"  {r[0]:{w}s} {r[1]:>10s} {r[2]:>10s} {r[3]:>12s}" for r in rows]
    out.append(f"  epochs per trial: ASHA {a['epochs_per_trial']}, FIFO {f['epochs_per_trial']}")
    out.append(
        f"  ASHA saved {100 * (1 - res['device_ratio']):.0f} % of the device time; FIFO's best configuration "
        f"(trial {f['best_trial']}) ran {res['asha_epochs_of_fifo_best']} epoch(s) under ASHA"
    )
    for r in res["rung_agreement"]:
        out.append(f"  rung at epoch {r['rung']}: Spearman {r['spearman']:.2f} between ASHA's view and the final "
                   f"values of the same {r['trials']} configurations")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-samples", type=int, help="trials per sweep (default: the demo space's)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial (default: the space's)")
    p.add_argument("--seed", type=int, default=0, help="random-search seed shared by both sweeps (default 0)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials at once (default 1: steady timings)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 trials x 2 epochs")
    p.add_argument("--keep", action="store_true", help="keep the temporary sweep folders and print the path")
    p.add_argument("--out", type=Path, help="JSON path (default results/early_stopping[_quick].json)")
    args = p.parse_args()
    space = search_spaces.get("demo")
    if args.quick:
        args.num_samples, args.max_epochs = 3, 2
    args.num_samples = args.num_samples or space.defaults["num_samples"]
    space = space.with_overrides(max_epochs=args.max_epochs)
    rungs, rung = [], space.scheduler["grace_period"]
    while rung < space.scheduler["max_t"]:  # ASHA's rungs: grace * rf**k below max_t
        rungs.append(rung)
        rung *= space.scheduler["reduction_factor"]
    out = args.out or RESULTS_DIR / ("early_stopping_quick.json" if args.quick else "early_stopping.json")
    flags = ["--search", "random", "--seed", str(args.seed), "--num-samples", str(args.num_samples),
             "--max-concurrent", str(args.max_concurrent)]  # fmt: skip
    flags += ["--max-epochs", str(args.max_epochs)] if args.max_epochs else []
    tmp = Path(tempfile.mkdtemp(prefix="bes_", dir="/tmp"))  # short: Ray's socket paths live under it
    start = time.perf_counter()
    try:
        print(f"warm-up dry run (demo data cached): {warm_up(tmp, child_env(tmp)):.1f} s")
        monitor = LoadMonitor()
        runs = {}
        for sched in SCHEDULERS:
            print(f"{sched}: {args.num_samples} trials, seed {args.seed}", flush=True)
            runs[sched] = run_sweep(tmp, f"es-{sched}", [*flags, "--scheduler", sched])
        load = with_sweep_cpu(monitor.stop(), sum(r.cpu_s for r in runs.values()))
    finally:
        if args.keep:
            print(f"sweep folders kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    configs = compare_configs(runs)
    res: dict[str, Any] = {s: summarize_run(runs[s]) for s in SCHEDULERS}
    res["configs"] = configs
    res["device_ratio"] = res["asha"]["device_s"] / res["fifo"]["device_s"]
    res["time_saved"] = 1 - res["device_ratio"]
    res["recall_gap"] = res["fifo"]["best_val_recall_at_1"] - res["asha"]["best_val_recall_at_1"]
    res["asha_epochs_of_fifo_best"] = res["asha"]["epochs_per_trial"][res["fifo"]["best_trial"]]
    res["max_val_recall_diff_same_config_same_epoch"] = max_metric_diff(runs)
    res["rung_agreement"] = rung_agreement(runs, rungs)
    res["benchmark_wall_s"] = time.perf_counter() - start
    print(
        f"\nsampled configurations identical in both runs: {configs['identical']}/{configs['trials']} "
        f"({'yes' if configs['all_identical'] else 'NO'}); largest val R@1 difference of a configuration at "
        f"the same epoch between the runs: {res['max_val_recall_diff_same_config_same_epoch']:.4f}"
    )
    print(table(res))
    print(f"\n  benchmark took {res['benchmark_wall_s'] / 60:.1f} min; {describe_load(load)}")
    save_json(out, {"machine": machine_info("cpu"), "load": load, "settings": vars(args) | {"out": str(out)},
                    "warm_cache": True, "result": res})  # fmt: skip
    print(f"saved {out}")


if __name__ == "__main__":
    main()
