"""Evaluation share of an epoch at CUB and SOP sizes, before and after bounded evaluation (``eval.full_every``).

Measured here: ``compute_metrics`` on synthetic clustered 512-d embeddings (``bench_evaluation.make_data``) of
the sizes of the dcml_cub / dcml_sop sweeps' splits (validation = 20 % of the training classes; test; k-means
with the number of validation classes on val and of training classes on test, as the engine does), once with
every metric of the spaces (Recall@k, NMI, F1, mAP_c, MAP@R) and once with Recall@k only. Each space evaluates
3 (CUB) or 4 (SOP) evaltypes, the same computation on a different 512-d combination of the heads: the split's
time is the measured one times that count.

Per epoch (amortised), with ``p`` the share of epochs whose validation Recall@1 improves (test is evaluated
then) and ``N`` = ``eval.full_every``:

* before: every metric on val every epoch, and on test at each improvement: E x (val_all + p test_all);
* after: Recall@k every epoch, the rest every N epochs (rungs and the last epoch add a few):
  E x (val_r + p test_r + ((val_all - val_r) + p (test_all - test_r)) / N).

The share divides by (training epoch + evaluation); the training epoch is NOT measured here (this machine has
no GPU): it is the training images divided by ``--train-images-per-s`` (default 1,850: the A100 estimate of
docs/performance.md, 2,500 img/s for the baseline ResNet-50 divided by DiVA's 1.35x), plus the embedding pass of
val + test at 3x that rate. Usage::

    python benchmarks/bench_eval_share.py               # CUB and SOP sizes, N = 5 (CUB) and 10 (SOP)
    python benchmarks/bench_eval_share.py --quick       # CUB only

Results: ``benchmarks/results/eval_share.json``.
"""

from __future__ import annotations

import argparse
import time

from bench_evaluation import make_data
from common import RESULTS_DIR, LoadMonitor, describe_load, machine_info, save_json

# split sizes of the full data sets (dcml_core.data.FULL_COUNTS) with the sweeps' val_fraction 0.2
SIZES = {
    "CUB200 (dcml_cub)": {"train": 4_691, "val": (1_173, 20), "test": (5_924, 100), "nmi_k_test": 100,
                          "recall_ks": (1, 2, 4, 8), "evaltypes": 3, "full_every": 5},
    "SOP (dcml_sop)": {"train": 47_641, "val": (11_910, 2_264), "test": (60_502, 11_316), "nmi_k_test": 11_318,
                       "recall_ks": (1, 10, 100), "evaltypes": 4, "full_every": 10},
}  # fmt: skip
ALL = ("recall", "nmi", "f1", "map_c", "map@r")


def timed(n: int, n_classes: int, nmi_k: int, recall_ks: tuple, metrics: tuple) -> float:
    from dcml_core.evaluation import compute_metrics

    emb, labels = make_data(n, 512, n_classes, seed=0, noise=1.2)
    start = time.perf_counter()
    compute_metrics(emb, labels, recall_ks=recall_ks, nmi_k=nmi_k, metrics=metrics, device="cpu")
    return time.perf_counter() - start


def per_epoch(t: dict[str, float], e: int, n: int, p: float) -> tuple[float, float]:
    before = e * (t["val_all"] + p * t["test_all"])
    after = e * (t["val_r"] + p * t["test_r"] + ((t["val_all"] - t["val_r"]) + p * (t["test_all"] - t["test_r"])) / n)
    return before, after


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-images-per-s", type=float, default=1850.0, help="training throughput (GPU estimate)")
    p.add_argument("--quick", action="store_true", help="CUB sizes only")
    args = p.parse_args()
    monitor, out = LoadMonitor(), {}
    timed(2_000, 20, 20, (1,), ALL)  # warm-up: faiss, OpenMP threads
    for name, s in SIZES.items():
        if args.quick and "SOP" in name:
            continue
        (nv, cv), (nt, ct) = s["val"], s["test"]
        t = {
            "val_all": timed(nv, cv, cv, s["recall_ks"], ALL), "val_r": timed(nv, cv, cv, s["recall_ks"], ("recall",)),
            "test_all": timed(nt, ct, s["nmi_k_test"], s["recall_ks"], ALL),
            "test_r": timed(nt, ct, s["nmi_k_test"], s["recall_ks"], ("recall",)),
        }  # fmt: skip
        train_s = s["train"] / args.train_images_per_s + (nv + nt) / (3 * args.train_images_per_s)
        rows = {}
        for prob in (1.0, 0.0):
            before, after = per_epoch(t, s["evaltypes"], s["full_every"], prob)
            rows[f"p={prob:g}"] = {"eval_before_s": before, "eval_after_s": after,
                                   "share_before": before / (train_s + before), "share_after": after / (train_s + after)}  # fmt: skip
        out[name] = {"one_evaltype_s": t, "train_epoch_estimate_s": train_s, **{k: v for k, v in s.items()}, "per_epoch": rows}
        print(f"{name}: one evaltype val all {t['val_all']:.2f} s / recall {t['val_r']:.2f} s, test all "
              f"{t['test_all']:.2f} s / recall {t['test_r']:.2f} s; x{s['evaltypes']} evaltypes, full_every "
              f"{s['full_every']}; training epoch (estimate) {train_s:.1f} s")  # fmt: skip
        for k, r in rows.items():
            print(f"  {k} (test evaluated {'every epoch' if k == 'p=1' else 'never'}): evaluation per epoch "
                  f"{r['eval_before_s']:.1f} s -> {r['eval_after_s']:.1f} s, share of the epoch "
                  f"{100 * r['share_before']:.0f} % -> {100 * r['share_after']:.0f} %")  # fmt: skip
    load = monitor.stop()
    print(f"  {describe_load(load)}")
    path = RESULTS_DIR / ("eval_share_quick.json" if args.quick else "eval_share.json")
    save_json(path, {"machine": machine_info("cpu"), "load": load, "settings": vars(args), "result": out})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
