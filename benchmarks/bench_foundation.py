"""Foundation benchmark: a training step and an evaluation, measured in the same run, with their ratios.

Part 1 is ``bench_evaluation.run_case``: our ``compute_metrics`` and pytorch-metric-learning's
``AccuracyCalculator`` on the same 10,000 x 512 embeddings (100 classes), each run in its own process, ours and
PML alternating; then the kNN and k-means inside ours, timed in this process. Part 2 is ``bench_training``
(margin baseline, DiVA and DCML through the real ``Engine``; ResNet-18, 64 px, batch 32, interleaved rounds).
Printed ratios: DiVA and DCML over the baseline step (wall clock and CPU time), PML over ours for the
evaluation, and one evaluation expressed in baseline training steps. Usage::

    python benchmarks/bench_foundation.py             # a few minutes on 2 idle cores
    python benchmarks/bench_foundation.py --quick     # smoke run: 3 rounds, 2,000 x 512 evaluations

Results: ``benchmarks/results/foundation.json`` (``foundation_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import bench_evaluation
import bench_training
import faiss
import numpy as np
import torch
from common import RESULTS_DIR, LoadMonitor, describe_load, save_json, summarize

EVAL_DIM = 512
RSS_NOTE = (
    "peak RSS of the evaluation workers is not reliable here: Linux carries ru_maxrss across exec, so each "
    "worker reports at least this process's peak; bench_evaluation.py run on its own is the memory reference"
)


def run_evaluation(n: int, n_classes: int, rounds: int, noise: float) -> dict[str, Any]:
    """``bench_evaluation.run_case`` ``rounds`` times with one timed run each, so ours and PML alternate.

    ``run_case`` times all of ours, then all of PML; on a loaded machine that lets load changes decide the
    ratio. One run per call alternates them (ours, PML, ours, PML, ...); the per-round ratios are kept too.
    """
    monitor = LoadMonitor()
    cases = [bench_evaluation.run_case(n, EVAL_DIM, n_classes, 1, seed=0, noise=noise) for _ in range(rounds)]
    case = dict(cases[-1])
    for method in ("ours", "pml"):
        times = [c[method]["times_s"][0] for c in cases]
        case[method] = {
            **cases[-1][method],
            "times_s": times,
            "median_s": float(np.median(times)),
            "peak_rss_mb": max(c[method]["peak_rss_mb"] for c in cases),
        }
    case["speedup_ours_vs_pml"] = case["pml"]["median_s"] / case["ours"]["median_s"]
    paired = [c["pml"]["times_s"][0] / c["ours"]["times_s"][0] for c in cases]
    case["speedup_paired_median"] = float(np.median(paired))
    case["load"] = monitor.stop()
    return case


def evaluation_parts(n: int, n_classes: int, repeats: int, noise: float) -> dict[str, Any]:
    """Time the two searches inside our evaluation, in this process, on the same embeddings (interleaved).

    kNN with the faiss backend (what ``compute_metrics`` uses on the CPU) and with the torch backend (what it
    uses on CUDA; here on the CPU), and the faiss k-means behind NMI and F1 (CPU unless faiss sees a GPU).
    """
    from dcml_core.evaluation import kmeans, knn

    x, labels = bench_evaluation.make_data(n, EVAL_DIM, n_classes, seed=0, noise=noise)
    k = int(min(max(8, np.bincount(labels).max()), n - 1))  # the k compute_metrics searches
    parts = {
        "knn_faiss_cpu": lambda: knn(x, k, backend="faiss"),
        "knn_torch_cpu": lambda: knn(x, k, device="cpu", backend="torch"),
        "kmeans_faiss_cpu": lambda: kmeans(x, n_classes),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    monitor = LoadMonitor()
    for _ in range(repeats):
        for name, fn in parts.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {"n": n, "k": k, "load": monitor.stop(), **{name: summarize(v) for name, v in times.items()}}


def ratios(training: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, float]:
    """The headline ratios of the foundation issue (training ratios: median of the per-round ratios)."""
    m = training["methods"]
    base = m["margin"]["wall"]["step"]["median_s"]
    ours, pml = evaluation["ours"]["median_s"], evaluation["pml"]["median_s"]
    return {
        "diva_over_margin_step_wall": m["diva"]["wall"]["ratio_paired_median"],
        "dcml_over_margin_step_wall": m["dcml"]["wall"]["ratio_paired_median"],
        "diva_over_margin_step_cpu": m["diva"]["cpu"]["ratio_paired_median"],
        "dcml_over_margin_step_cpu": m["dcml"]["cpu"]["ratio_paired_median"],
        "pml_eval_over_ours": pml / ours,
        "pml_eval_over_ours_paired": evaluation["speedup_paired_median"],
        "ours_eval_in_margin_steps": ours / base,
        "pml_eval_in_margin_steps": pml / base,
    }


def report_parts(evaluation: dict[str, Any]) -> None:
    """Print the kNN / k-means times and what is left of our evaluation without them."""
    parts = evaluation["parts"]
    med = {name: parts[name]["median_s"] for name in ("knn_faiss_cpu", "knn_torch_cpu", "kmeans_faiss_cpu")}
    rest = evaluation["ours"]["median_s"] - med["knn_faiss_cpu"] - med["kmeans_faiss_cpu"]
    print(
        f"  parts of ours (in-process, k={parts['k']}): kNN faiss {med['knn_faiss_cpu']:.2f} s, kNN torch "
        f"(CPU) {med['knn_torch_cpu']:.2f} s, k-means faiss {med['kmeans_faiss_cpu']:.2f} s; "
        f"metrics and the rest ~{max(rest, 0.0):.2f} s"
    )


def report(res: dict[str, Any]) -> None:
    """Print the summary lines (each part was printed by its own report)."""
    r, ev = res["ratios"], res["evaluation"]
    steps = res["training"]["methods"]
    print(f"\nfoundation summary ({res['training']['machine']['torch_threads']} torch threads in training):")
    print(
        f"  training step median {1e3 * steps['margin']['wall']['step']['median_s']:.0f} ms (margin); "
        f"DiVA / margin {r['diva_over_margin_step_wall']:.2f}x wall, {r['diva_over_margin_step_cpu']:.2f}x CPU; "
        f"DCML / margin {r['dcml_over_margin_step_wall']:.2f}x wall, {r['dcml_over_margin_step_cpu']:.2f}x CPU"
    )
    print(
        f"  evaluation {ev['n']:,} x {ev['d']}: ours {ev['ours']['median_s']:.2f} s, PML "
        f"{ev['pml']['median_s']:.2f} s -> PML / ours {r['pml_eval_over_ours']:.2f}x "
        f"(per-round pairs: {r['pml_eval_over_ours_paired']:.2f}x)"
    )
    print(
        f"  one evaluation = {r['ours_eval_in_margin_steps']:.1f} margin training steps "
        f"(PML: {r['pml_eval_in_margin_steps']:.1f})"
    )
    print(f"  evaluation part: {describe_load(ev['load'])}")
    print(f"  training part: {describe_load(res['training']['load'])}")
    print(f"  {RSS_NOTE}")


def main() -> None:
    """Run both parts, print them with their ratios, save the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=bench_training.TrainingSettings.rounds)
    p.add_argument(
        "--eval-repeats", type=int, default=5, help="timed evaluations per method, ours and PML alternating"
    )
    p.add_argument("--noise", type=float, default=3.5, help="within-class noise (bench_evaluation default)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for training; also OMP_NUM_THREADS of the evaluation workers",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 rounds, 2,000 x 512 evaluation twice")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.rounds < 1 or args.eval_repeats < 1:
        p.error("--rounds and --eval-repeats must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)  # the in-process k-means / kNN parts
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the evaluation workers
    settings = bench_training.TrainingSettings(rounds=args.rounds)
    n, classes, repeats = 10_000, 100, args.eval_repeats
    if args.quick:
        settings = dataclasses.replace(
            settings, warmup=1, rounds=3, component_rounds=2, pool=2, key_batches=4
        )
        n, classes, repeats = 2_000, 20, 2
    settings.check()
    evaluation = run_evaluation(n, classes, repeats, args.noise)  # first: this process is still small
    bench_evaluation.report(evaluation)
    evaluation["parts"] = evaluation_parts(n, classes, repeats, args.noise)
    report_parts(evaluation)
    training = bench_training.run(settings)
    bench_training.report(training)
    res = {
        "benchmark": "foundation",
        "evaluation": evaluation,
        "training": training,
        "ratios": ratios(training, evaluation),
        "notes": [RSS_NOTE],
    }
    report(res)
    out = args.out or RESULTS_DIR / ("foundation_quick.json" if args.quick else "foundation.json")
    print(f"\nsaved {save_json(out, res)}")


if __name__ == "__main__":
    main()
