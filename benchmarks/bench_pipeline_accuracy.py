"""Validation Recall@1 on the demo data after training with the reference vs the cached data pipeline.

Both pipelines apply the same transform (RandomResizedCrop -> flip -> normalise; Resize -> CenterCrop for
evaluation) but draw different random numbers, so single runs differ; what must agree is the distribution
over seeds. Each seed trains one engine per pipeline (same configuration otherwise, run back to back, order
alternating) and evaluates Recall@1 on the class-disjoint validation split. The verdict compares the
difference of the means with twice its standard error (Welch). Also reported: training seconds per epoch of
each pipeline on this machine. Usage::

    python benchmarks/bench_pipeline_accuracy.py                       # margin, 3 seeds, 6 epochs
    python benchmarks/bench_pipeline_accuracy.py --method diva --epochs 4

Results: ``benchmarks/results/pipeline_accuracy.json``. Expensive (minutes): a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS_DIR, LoadMonitor, describe_load, machine_info, save_json

from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.head_names import DISCRIMINATIVE, DIVA_HEADS


def make_config(pipeline: str, seed: int, args: argparse.Namespace) -> ExperimentConfig:
    """The demo run: ResNet-18 from scratch at 64 px (BN statistics trained: no weights offline)."""
    features = [DISCRIMINATIVE] if args.method == "margin" else list(DIVA_HEADS)
    return ExperimentConfig.from_dict(
        {
            "data": {"dataset": "demo", "batch_size": args.batch, "num_workers": args.workers,
                     "pipeline": pipeline},
            "model": {"method": args.method, "arch": "resnet18_normalize", "embed_dim": 64,
                      "pretrained": "none", "features": features},
            "diva": {"moco_n_key_batches": 4},
            "optim": {"lr": args.lr},
            "schedule": {"n_epochs": args.epochs},
            "eval": {"metrics": ["recall"]},
            "seed": seed,
            "device": "cpu",
        }
    )  # fmt: skip


def run_one(pipeline: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``args.epochs`` epochs and return the validation Recall@1 and timings."""
    engine = Engine(make_config(pipeline, seed, args))
    epoch_s = [engine.train_epoch()["train/epoch_time_s"] for _ in range(args.epochs)]
    metrics = engine.evaluate("val")
    return {
        "recall_at_1": metrics["val/recall_at_1"],
        "epoch_s": epoch_s,
        "eval_s": metrics["val/eval_time_s"],
    }


def verdict(ref: list[float], cached: list[float]) -> dict[str, float | bool]:
    """Difference of means and its Welch standard error; 'within noise' when |diff| <= 2 standard errors."""
    a, b = np.asarray(ref), np.asarray(cached)
    se = (
        float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
        if min(a.size, b.size) > 1
        else float("nan")
    )
    diff = float(b.mean() - a.mean())
    return {
        "diff_cached_minus_reference": diff,
        "standard_error": se,
        "within_noise": bool(abs(diff) <= 2 * se),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("margin", "diva", "dcml"), default="margin")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference pipeline")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "pipeline_accuracy.json")
    args = p.parse_args()
    if args.epochs < 1 or len(args.seeds) < 2:
        p.error("need --epochs >= 1 and at least two --seeds")
    torch.set_num_threads(args.threads)
    monitor = LoadMonitor()
    runs: dict[str, list[dict[str, Any]]] = {"reference": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="dcml-bench-cache-") as home:
        os.environ.setdefault("DCML_CACHE_HOME", home)  # leave the user's cache alone unless they set one
        for i, seed in enumerate(args.seeds):
            for pipeline in ("reference", "cached") if i % 2 == 0 else ("cached", "reference"):
                start = time.perf_counter()
                res = run_one(pipeline, seed, args)
                runs[pipeline].append({"seed": seed, **res})
                r1, epoch_s, total = res["recall_at_1"], np.mean(res["epoch_s"]), time.perf_counter() - start
                print(
                    f"seed {seed} {pipeline:9s} val R@1 {r1:.4f} train {epoch_s:.1f} s/epoch ({total:.0f} s)"
                )
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        r1 = [r["recall_at_1"] for r in rs]
        epoch_s = float(np.median([s for r in rs for s in r["epoch_s"]]))
        summary[name] = {"recall_at_1_mean": float(np.mean(r1)), "recall_at_1_std": float(np.std(r1, ddof=1)),
                         "epoch_s_median": epoch_s}  # fmt: skip
        print(f"{name:9s} val R@1 {np.mean(r1):.4f} +- {np.std(r1, ddof=1):.4f} over {len(r1)} seeds; "
              f"{summary[name]['epoch_s_median']:.1f} s/epoch")  # fmt: skip
    summary["verdict"] = verdict(*([r["recall_at_1"] for r in runs[k]] for k in ("reference", "cached")))
    v = summary["verdict"]
    print(f"difference {v['diff_cached_minus_reference']:+.4f} (standard error {v['standard_error']:.4f}): "
          f"{'within' if v['within_noise'] else 'OUTSIDE'} noise (|diff| <= 2 SE)")  # fmt: skip
    load = monitor.stop()
    print(describe_load(load))
    settings = vars(args) | {"out": str(args.out)}
    report = {
        "machine": machine_info("cpu"),
        "load": load,
        "settings": settings,
        "runs": runs,
        "summary": summary,
    }
    save_json(args.out, report)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
