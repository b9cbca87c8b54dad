"""Evaluation speed and memory: our ``compute_metrics`` vs pytorch-metric-learning's ``AccuracyCalculator``.

Both run on the same synthetic clustered, L2-normalised embeddings. Every timed run is a fresh subprocess,
and the runs alternate (ours, PML, ours, PML, ...) so that load changes on a shared machine hit both
methods alike. Peak memory is the worker's own ``VmHWM`` from ``/proc/self/status`` (``ru_maxrss`` can
carry the parent's peak across ``exec``); it includes faiss's and torch's native allocations. Usage::

    python benchmarks/bench_evaluation.py            # 10,000 x 512, 100 classes
    python benchmarks/bench_evaluation.py --large    # also 60,000 x 512 with 11,316 classes (SOP-sized)
    python benchmarks/bench_evaluation.py --quick    # smoke run: 2,000 x 512, 2 rounds

Ours computes Recall@1/2/4/8, NMI, F1, mAP_c and MAP@R; PML computes P@1 (= Recall@1), Recall@2/4/8
(a small custom metric on its kNN), NMI and MAP@R. Threads: PML runs with the libraries' defaults (one
OpenMP thread per core); ours with ``compute_metrics``' default, which gives faiss the cores other processes
leave idle. ``--threads N`` fixes N threads for both. Results: ``benchmarks/results/evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, LoadMonitor, describe_load, machine_info, save_json  # noqa: E402

RESULTS = RESULTS_DIR / "evaluation.json"
REPO = Path(__file__).resolve().parents[1]
PML_RECALL_KS = (2, 4, 8)
METHODS = ("ours", "pml")
SIZES = {"quick": (2_000, 20), "base": (10_000, 100), "large": (60_000, 11_316)}


def make_data(n: int, d: int, n_classes: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around random centres, every class with >= 2 members, rows L2-normalised."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate(
        [np.arange(n_classes), np.arange(n_classes), rng.integers(0, n_classes, n - 2 * n_classes)]
    )
    rng.shuffle(labels)
    x = rng.standard_normal((n_classes, d), dtype=np.float32)[labels]  # (N, D)
    x += noise * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels.astype(np.int64)


def proc_status_mb(field: str) -> float:
    """A memory field of this process from /proc/self/status (``VmHWM``: peak RSS, ``VmRSS``: now), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field} line; this benchmark needs Linux")


def _pml_calculator():
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    class WithRecall(AccuracyCalculator):
        """AccuracyCalculator plus Recall@k (any same-label item among the first k) on its own kNN."""

        def requires_knn(self):
            return super().requires_knn() + [f"recall_at_{k}" for k in PML_RECALL_KS]

    def recall_metric(k: int):
        def calculate(self, knn_labels, query_labels, **kwargs):
            return (knn_labels[:, :k] == query_labels[:, None]).any(dim=1).float().mean().item()

        return calculate

    for k in PML_RECALL_KS:
        setattr(WithRecall, f"calculate_recall_at_{k}", recall_metric(k))
    include = (
        "precision_at_1",
        "mean_average_precision_at_r",
        "NMI",
        *(f"recall_at_{k}" for k in PML_RECALL_KS),
    )
    return WithRecall(include=include, k="max_bin_count", device=torch.device("cpu"))


def worker(method: str, data_dir: Path, nmi_k: int) -> dict[str, Any]:
    """One timed evaluation of ``method`` on the saved embeddings, in this (fresh) process."""
    sys.path.insert(0, str(REPO))
    import torch

    x, labels = np.load(data_dir / "emb.npy"), np.load(data_dir / "labels.npy")
    if method == "ours":
        from dcml_core.evaluation import compute_metrics

        fixed = os.environ.get("OMP_NUM_THREADS")  # --threads: the same count for both methods

        def run(emb: np.ndarray, lab: np.ndarray, k: int) -> dict[str, float]:
            threads = int(fixed) if fixed else None  # None: compute_metrics picks from the idle cores
            return compute_metrics(emb, lab, nmi_k=k, device="cpu", num_threads=threads)
    else:
        calc = _pml_calculator()

        def run(emb: np.ndarray, lab: np.ndarray, k: int) -> dict[str, float]:
            out = calc.get_accuracy(torch.from_numpy(emb), torch.from_numpy(lab))
            return {key: float(v) for key, v in out.items()}

    run(x[:500], labels[:500], 5)  # untimed warm-up on a small slice: library and thread-pool start-up
    rss_after_load = proc_status_mb("VmRSS")
    start = time.perf_counter()
    metrics = run(x, labels, nmi_k)
    seconds = time.perf_counter() - start
    return {
        "time_s": seconds,
        "metrics": metrics,
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": proc_status_mb("VmHWM"),
    }


def _spawn(method: str, data_dir: str, nmi_k: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", method, "--data", data_dir, "--nmi-k", str(nmi_k)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_case(n: int, d: int, n_classes: int, repeats: int, seed: int, noise: float) -> dict[str, Any]:
    """``repeats`` rounds of (ours, PML), each run in a fresh subprocess, on one generated data set."""
    x, labels = make_data(n, d, n_classes, seed, noise)
    case: dict[str, Any] = {
        "n": n,
        "d": d,
        "classes": n_classes,
        "nmi_k": n_classes,
        "largest_class": int(np.bincount(labels).max()),
        "rounds": repeats,
    }
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    monitor = LoadMonitor()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "emb.npy", x)
        np.save(Path(tmp) / "labels.npy", labels)
        del x
        for r in range(repeats):
            for method in METHODS:
                runs[method].append(_spawn(method, tmp, n_classes))
                seconds = runs[method][-1]["time_s"]
                print(f"  {n:,}: round {r + 1}/{repeats} {method} {seconds:.2f} s", flush=True)
    case["load"] = monitor.stop()
    for method in METHODS:
        times = [run["time_s"] for run in runs[method]]
        case[method] = {
            "times_s": times,
            "median_s": float(np.median(times)),
            "metrics": runs[method][-1]["metrics"],
            "rss_after_load_mb": max(run["rss_after_load_mb"] for run in runs[method]),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs[method]),
        }
    ours, pml = case["ours"], case["pml"]
    case["speedup_ours_vs_pml"] = pml["median_s"] / ours["median_s"]
    case["speedup_paired_median"] = float(np.median([p / o for p, o in zip(pml["times_s"], ours["times_s"])]))
    om, pm = ours["metrics"], pml["metrics"]
    case["recall@1_minus_pml_precision_at_1"] = om["recall@1"] - pm["precision_at_1"]
    case["map@r_minus_pml_map_at_r"] = om["map@r"] - pm["mean_average_precision_at_r"]
    case["nmi_minus_pml_nmi"] = om["nmi"] - pm["NMI"]
    return case


def report(case: dict[str, Any]) -> None:
    """Print one case: times, ratio, peak RSS and metric agreement."""
    ours, pml = case["ours"], case["pml"]
    print(
        f"\n{case['n']:,} x {case['d']}, {case['classes']:,} classes (largest {case['largest_class']}), "
        f"k-means k={case['nmi_k']:,}"
    )
    rows = [
        ("ours (R@1,2,4,8 NMI F1 mAP_c MAP@R)", ours),
        ("PML  (P@1 R@2,4,8 NMI MAP@R)", pml),
    ]
    print(f"  {'method':<38}{'median s':>10}{'runs s':>28}{'peak RSS MB':>13}")
    for name, m in rows:
        runs = ", ".join(f"{t:.2f}" for t in m["times_s"])
        print(f"  {name:<38}{m['median_s']:>10.2f}{runs:>28}{m['peak_rss_mb']:>13.0f}")
    paired = case.get("speedup_paired_median")
    print(
        f"  PML time / our time: {case['speedup_ours_vs_pml']:.2f}x (medians)"
        + (f", {paired:.2f}x (median of per-round ratios)" if paired is not None else "")
    )
    om, pm = ours["metrics"], pml["metrics"]
    same = abs(case["recall@1_minus_pml_precision_at_1"]) < 1e-6
    print(
        f"  recall@1 {om['recall@1']:.6f} vs PML precision_at_1 {pm['precision_at_1']:.6f}: "
        f"{'EQUAL' if same else 'DIFFERENT'}; MAP@R {om['map@r']:.6f} vs PML "
        f"{pm['mean_average_precision_at_r']:.6f}; NMI {om['nmi']:.6f} vs PML {pm['NMI']:.6f}"
    )
    print(
        f"  R@2/4/8 {[round(om[f'recall@{k}'], 6) for k in PML_RECALL_KS]} vs PML "
        f"{[round(pm[f'recall_at_{k}'], 6) for k in PML_RECALL_KS]}; ours only: F1 {om['f1']:.4f}, "
        f"mAP_c {om['map_c']:.4f}"
    )
    if "load" in case:
        print(f"  {describe_load(case['load'])}")


def summary_table(cases: list[dict[str, Any]]) -> None:
    """One line per size: medians, ratio and peak RSS of both methods."""
    print(f"\n{'size':>14}{'ours s':>9}{'PML s':>9}{'PML/ours':>10}{'ours peak MB':>14}{'PML peak MB':>13}")
    for c in cases:
        print(
            f"{c['n']:>8,} x {c['d']:<3}{c['ours']['median_s']:>9.2f}{c['pml']['median_s']:>9.2f}"
            f"{c['speedup_ours_vs_pml']:>9.2f}x"
            f"{c['ours']['peak_rss_mb']:>14.0f}{c['pml']['peak_rss_mb']:>13.0f}"
        )


def main() -> None:
    """Run the benchmark and save the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--large", action="store_true", help="also run 60,000 x 512 with 11,316 classes")
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 x 512, 20 classes, 2 rounds")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (ours, PML) per size")
    p.add_argument("--noise", type=float, default=3.5, help="within-class noise relative to class centres")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="fixed OpenMP threads for both methods (OMP_NUM_THREADS; ours: num_threads); default: unset",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--nmi-k", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.nmi_k)))
        return
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by both workers alike

    import faiss
    import pytorch_metric_learning

    sizes = [SIZES["quick"]] if args.quick else [SIZES["base"]] + ([SIZES["large"]] if args.large else [])
    repeats = 2 if args.quick else args.repeats
    results: dict[str, Any] = {
        "benchmark": "evaluation",
        "machine": {
            **machine_info("cpu"),
            "faiss": faiss.__version__,
            "faiss_omp_threads": faiss.omp_get_max_threads(),
            "pytorch_metric_learning": pytorch_metric_learning.__version__,
        },
        "noise": args.noise,
        "omp_num_threads_workers": os.environ.get("OMP_NUM_THREADS"),
        "protocol": "each timed run in a fresh subprocess after a 500-point warm-up; ours and PML alternate; "
        "peak RSS = VmHWM of the worker",
        "cases": [],
    }
    for n, classes in sizes:
        case = run_case(n, 512, classes, repeats, seed=0, noise=args.noise)
        report(case)
        results["cases"].append(case)
    summary_table(results["cases"])
    out = args.out or (RESULTS.with_name("evaluation_quick.json") if args.quick else RESULTS)
    print(f"\nsaved {save_json(out, results)}")


if __name__ == "__main__":
    main()
