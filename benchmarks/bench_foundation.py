"""Foundation benchmark: a training step and an evaluation, measured in the same run, with their ratios.

Part 1 is ``bench_evaluation.run_case``: our ``compute_metrics`` and pytorch-metric-learning's
``AccuracyCalculator`` on the same 10,000 x 512 embeddings (100 classes), each in its own process. Part 2 is
``bench_training`` (margin baseline, DiVA and DCML through the real ``Engine``; ResNet-18, 64 px, batch 32,
interleaved rounds). Printed ratios: DiVA and DCML over the baseline step (wall clock and CPU time), PML over
ours for the evaluation, and one evaluation expressed in baseline training steps. Usage::

    python benchmarks/bench_foundation.py             # a few minutes on 2 idle cores
    python benchmarks/bench_foundation.py --quick     # smoke run: 3 rounds, 2,000 x 512 evaluation

Results: ``benchmarks/results/foundation.json`` (``foundation_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import bench_evaluation
import bench_training
import torch
from common import RESULTS_DIR, LoadMonitor, describe_load, save_json

EVAL_DIM = 512
RSS_NOTE = (
    "peak RSS of the evaluation workers is not reliable here: Linux carries ru_maxrss across exec, so each "
    "worker reports at least this process's peak; bench_evaluation.py run on its own is the memory reference"
)


def run_evaluation(n: int, n_classes: int, repeats: int, noise: float) -> dict[str, Any]:
    """``bench_evaluation.run_case`` on n x 512 embeddings, with the machine load during it."""
    monitor = LoadMonitor()
    case = bench_evaluation.run_case(n, EVAL_DIM, n_classes, repeats, seed=0, noise=noise)
    case["load"] = monitor.stop()
    return case


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
        "ours_eval_in_margin_steps": ours / base,
        "pml_eval_in_margin_steps": pml / base,
    }


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
        f"{ev['pml']['median_s']:.2f} s -> PML / ours {r['pml_eval_over_ours']:.2f}x"
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
    p.add_argument("--eval-repeats", type=int, default=3, help="timed evaluations per method")
    p.add_argument("--noise", type=float, default=3.5, help="within-class noise (bench_evaluation default)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for training; also OMP_NUM_THREADS of the evaluation workers",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 rounds, 2,000 x 512 evaluation once")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.rounds < 1 or args.eval_repeats < 1:
        p.error("--rounds and --eval-repeats must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the evaluation workers
    settings = bench_training.TrainingSettings(rounds=args.rounds)
    n, classes, repeats = 10_000, 100, args.eval_repeats
    if args.quick:
        settings = dataclasses.replace(
            settings, warmup=1, rounds=3, component_rounds=2, pool=2, key_batches=4
        )
        n, classes, repeats = 2_000, 20, 1
    settings.check()
    evaluation = run_evaluation(n, classes, repeats, args.noise)  # first: this process is still small
    bench_evaluation.report(evaluation)
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
