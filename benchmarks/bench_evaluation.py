"""Evaluation speed and memory: our ``compute_metrics`` vs pytorch-metric-learning's ``AccuracyCalculator``.

Both run on the same synthetic clustered, L2-normalised embeddings in the same benchmark run. Each
(size, method) runs in its own subprocess so that its peak RSS (``ru_maxrss``, which includes faiss's native
allocations) is measured separately. Usage::

    python benchmarks/bench_evaluation.py            # 10,000 x 512, 100 classes
    python benchmarks/bench_evaluation.py --large    # also 60,000 x 512 with 11,316 classes (SOP-sized)

Results: ``benchmarks/results/evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation.json"
REPO = Path(__file__).resolve().parents[1]
PML_RECALL_KS = (2, 4, 8)


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


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def worker(method: str, data_dir: Path, repeats: int, nmi_k: int) -> dict:
    """Time one method on the saved embeddings; runs in its own process."""
    sys.path.insert(0, str(REPO))
    import torch

    x, labels = np.load(data_dir / "emb.npy"), np.load(data_dir / "labels.npy")
    if method == "ours":
        from dcml_core.evaluation import compute_metrics

        def run() -> dict:
            return compute_metrics(x, labels, nmi_k=nmi_k, device="cpu")
    else:
        calc = _pml_calculator()
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels)

        def run() -> dict:
            return {k: float(v) for k, v in calc.get_accuracy(xt, lt).items()}

    rss_before = peak_rss_mb()
    times, metrics = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        metrics = run()
        times.append(time.perf_counter() - start)
    return {
        "times_s": times,
        "median_s": float(np.median(times)),
        "metrics": metrics,
        "rss_after_load_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_case(n: int, d: int, n_classes: int, repeats: int, seed: int, noise: float) -> dict:
    """Generate one data set and time both methods on it, each in a fresh subprocess."""
    x, labels = make_data(n, d, n_classes, seed, noise)
    case = {
        "n": n,
        "d": d,
        "classes": n_classes,
        "nmi_k": n_classes,
        "largest_class": int(np.bincount(labels).max()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "emb.npy", x)
        np.save(Path(tmp) / "labels.npy", labels)
        for method in ("ours", "pml"):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                method,
                "--data",
                tmp,
                "--repeats",
                str(repeats),
                "--nmi-k",
                str(n_classes),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{method} worker failed:\n{proc.stderr[-3000:]}")
            case[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, pml = case["ours"], case["pml"]
    case["speedup_ours_vs_pml"] = pml["median_s"] / ours["median_s"]
    case["recall@1_minus_pml_precision_at_1"] = ours["metrics"]["recall@1"] - pml["metrics"]["precision_at_1"]
    case["map@r_minus_pml_map_at_r"] = (
        ours["metrics"]["map@r"] - pml["metrics"]["mean_average_precision_at_r"]
    )
    return case


def report(case: dict) -> None:
    """Print one case."""
    ours, pml = case["ours"], case["pml"]
    print(
        f"\n{case['n']:,} x {case['d']}, {case['classes']} classes (largest {case['largest_class']}), "
        f"k-means k={case['nmi_k']}"
    )
    print(
        f"  ours (R@1,2,4,8 + NMI + F1 + mAP_c + MAP@R): median {ours['median_s']:.2f} s {ours['times_s']}, "
        f"peak RSS {ours['peak_rss_mb']:.0f} MB (after load {ours['rss_after_load_mb']:.0f} MB)"
    )
    print(
        f"  PML  (P@1 + R@2,4,8 + NMI + MAP@R):          median {pml['median_s']:.2f} s {pml['times_s']}, "
        f"peak RSS {pml['peak_rss_mb']:.0f} MB (after load {pml['rss_after_load_mb']:.0f} MB)"
    )
    print(f"  speed ratio PML / ours = {case['speedup_ours_vs_pml']:.2f}x")
    om, pm = ours["metrics"], pml["metrics"]
    same = abs(case["recall@1_minus_pml_precision_at_1"]) < 1e-6
    print(
        f"  recall@1 {om['recall@1']:.6f} vs PML precision_at_1 {pm['precision_at_1']:.6f}: "
        f"{'EQUAL' if same else 'DIFFERENT'}"
    )
    print(
        f"  MAP@R {om['map@r']:.6f} vs PML {pm['mean_average_precision_at_r']:.6f}; "
        f"R@2/4/8 {[round(om[f'recall@{k}'], 6) for k in PML_RECALL_KS]} vs "
        f"{[round(pm[f'recall_at_{k}'], 6) for k in PML_RECALL_KS]}; "
        f"NMI {om['nmi']:.4f} vs PML {pm['NMI']:.4f} (different k-means settings)"
    )
    print(f"  also ours only: F1 {om['f1']:.4f}, mAP_c {om['map_c']:.4f}")


def main() -> None:
    """Run the benchmark and save the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--large", action="store_true", help="also run 60,000 x 512 with 11,316 classes")
    p.add_argument(
        "--repeats", type=int, default=3, help="timed runs per method (10k case; the 60k case runs once)"
    )
    p.add_argument(
        "--noise", type=float, default=3.5, help="within-class noise relative to the class centres"
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", choices=("ours", "pml"), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--nmi-k", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.repeats, args.nmi_k)))
        return

    import faiss
    import pytorch_metric_learning
    import torch

    cases = [(10_000, 512, 100, args.repeats)] + ([(60_000, 512, 11_316, 1)] if args.large else [])
    results = {
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "faiss": faiss.__version__,
            "pytorch_metric_learning": pytorch_metric_learning.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "noise": args.noise,
        "cases": [],
    }
    for n, d, classes, repeats in cases:
        case = run_case(n, d, classes, repeats, seed=0, noise=args.noise)
        report(case)
        results["cases"].append(case)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
