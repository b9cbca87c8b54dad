"""Data-pipeline throughput: reference JPEG decoding + torchvision vs decoded cache + batched augmentation.

Reference: the real ``ImageDataset`` with the reference ``build_transforms`` (decode every file, then
RandomResizedCrop -> flip -> ToTensor -> Normalize per image; view B is a second draw on the same decoded
image), collated into batches exactly as a ``DataLoader`` worker does. Cached: ``CachedTrainLoader`` over
the decoded cache (``dcml_core/data/cached_pipeline.py``), same batches of indices. Evaluation inputs
(Resize -> CenterCrop) are compared the same way.

Per CPU core: one process, one torch thread, no prefetch thread; throughput is images per CPU-second of the
process (``time.process_time``), which other processes on a loaded machine do not inflate, and per
wall-second. The two pipelines run interleaved round-robin (order alternating), ``--rounds`` chunks of
``--batches`` batches each, so load changes hit both alike. A second part measures wall throughput on 2
cores: the reference ``DataLoader`` with 2 worker processes against the cached loader with its prefetch
thread and 2 resampling threads, in steady state (from the 4th batch on) and over whole short epochs.
Data: ``--images`` generated JPEGs of CUB's size (500x375, 500x333 and 375x500, quality 90) in a temporary
folder, and the demo data (64 px PNG glyphs). Usage::

    python benchmarks/bench_data_pipeline.py            # 500 JPEGs, 7 rounds
    python benchmarks/bench_data_pipeline.py --quick    # smoke run, results/data_pipeline_quick.json

Results: ``benchmarks/results/data_pipeline.json``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS_DIR, LoadMonitor, describe_load, machine_info, save_json
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from dcml_core.data import ClassRandomBatchSampler, ImageDataset, Record, build_transforms, load_records
from dcml_core.data.batch_augment import BatchRandomResizedCrop
from dcml_core.data.cache import open_cache
from dcml_core.data.cached_pipeline import CachedEvalLoader, CachedTrainLoader, default_cache_size

CUB_SIZES = ((375, 500), (333, 500), (500, 375))  # (H, W), in proportions 2:1:1


def make_jpegs(folder: Path, n: int, n_classes: int = 50, seed: int = 0) -> list[Record]:
    """``n`` photo-like JPEGs of CUB's sizes and file sizes (~85 KB; CUB: 1.1 GB / 11,788 images ~ 95 KB).

    Four octaves of upsampled noise (a 1/f-like spectrum as in photographs) plus sensor grain, quality 90.
    """
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        h, w = CUB_SIZES[[0, 0, 1, 2][i % 4]]
        pixels, total = np.zeros((h, w, 3), np.float32), 0.0
        for div, amp in ((48, 1.0), (16, 0.6), (6, 0.45), (2, 0.35)):
            small = rng.integers(0, 256, (max(h // div, 2), max(w // div, 2), 3), dtype=np.uint8)
            pixels += amp * np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
            total += amp
        pixels = (pixels / total - pixels.mean() / total) * 1.8 + 128 + rng.normal(0, 4, (h, w, 3))
        label = i % n_classes
        path = folder / f"{label:03d}.class" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        records.append(Record(str(path), label, path.parent.name))
    return records


class Case:
    """One data set and transform setting, with both pipelines built over the same records."""

    def __init__(
        self, records: list[Record], crop: int, resize: int, scale: tuple[float, float], home: Path
    ) -> None:
        self.records, self.crop, self.resize, self.scale = records, crop, resize, scale
        start = time.perf_counter()
        self.cache = open_cache(
            [r.path for r in records], default_cache_size(resize), home=home, name="bench"
        )
        self.build_s = time.perf_counter() - start
        self.rows = self.cache.rows([r.path for r in records])
        self.labels = torch.tensor([r.label for r in records])
        self.train_tf = build_transforms("train", crop_size=crop, resize_size=resize, crop_scale=scale)
        self.eval_tf = build_transforms("eval", crop_size=crop, resize_size=resize)
        self.augment = BatchRandomResizedCrop(crop, scale=scale)
        start = time.perf_counter()
        self.eval_crops = self.cache.eval_crops(resize, crop)
        self.eval_build_s = time.perf_counter() - start

    def reference(self, mode: str, batches: list[list[int]]) -> Iterable:
        if mode == "eval":
            ds = ImageDataset(self.records, self.eval_tf)
        else:
            ds = ImageDataset(self.records, self.train_tf, self.train_tf if mode == "train_2views" else None)
        return (default_collate([ds[i] for i in b]) for b in batches)

    def cached(self, mode: str, batches: list[list[int]], prefetch: bool = False) -> Iterable:
        if mode == "eval":
            order = [i for b in batches for i in b]
            loader = CachedEvalLoader(
                self.eval_crops,
                self.rows[order],
                self.labels[order],
                len(batches[0]),
                self.augment.normalize,
                "cpu",
            )
            return iter(loader)
        two = mode == "train_2views"
        loader = CachedTrainLoader(
            self.cache, self.rows, self.labels, batches, self.augment, torch.device("cpu"), two, prefetch
        )
        return iter(loader)


def _consume(batches: Iterable) -> int:
    return sum(int(b[0].shape[0]) for b in batches)


def _timed(run: Callable[[], int]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    n = run()
    return n, time.perf_counter() - wall, time.process_time() - cpu


def per_core(case: Case, mode: str, rounds: int, n_batches: int, batch: int, seed: int) -> dict[str, Any]:
    """Both pipelines interleaved on the same index batches: images per CPU-second and wall-second."""
    sampler = ClassRandomBatchSampler(case.labels.tolist(), batch, 2, generator_seed=seed)
    epochs = itertools.chain.from_iterable(iter(sampler) for _ in itertools.count())
    out: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in ("reference", "cached")}
    sequential = [list(range(s, s + batch)) for s in range(0, len(case.records) - batch + 1, batch)]
    for r in range(rounds + 1):  # round 0 warms up
        batches = sequential[:n_batches] if mode == "eval" else list(itertools.islice(epochs, n_batches))
        order = ("reference", "cached") if r % 2 else ("cached", "reference")
        for name in order:
            make = case.reference if name == "reference" else case.cached
            n, wall, cpu = _timed(lambda: _consume(make(mode, batches)))  # noqa: B023
            if r:
                out[name]["cpu"].append(n / cpu)
                out[name]["wall"].append(n / wall)
    return _summary(out)


def _summary(out: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for name, clocks in out.items():
        res[name] = {f"images_per_{c}_s_median": float(np.median(v)) for c, v in clocks.items()}
        res[name].update({f"images_per_{c}_s": [round(x, 1) for x in v] for c, v in clocks.items()})
    for clock in ("cpu", "wall"):
        per_round = np.asarray(out["cached"][clock]) / np.asarray(out["reference"][clock])
        res[f"ratio_{clock}"] = float(np.median(out["cached"][clock]) / np.median(out["reference"][clock]))
        res[f"ratio_{clock}_per_round_median"] = float(np.median(per_round))
    return res


def _steady(batches: Iterable, skip: int) -> tuple[int, float, float]:
    """Images after the first ``skip`` batches, and the wall time to get them (worker start-up excluded)."""
    start, n, epoch = None, 0, time.perf_counter()
    for k, b in enumerate(batches):
        if k == skip - 1:
            start = time.perf_counter()
        elif k >= skip:
            n += int(b[0].shape[0])
    end = time.perf_counter()
    return n, end - (start if start is not None else epoch), end - epoch


def two_cores(
    case: Case, mode: str, n_batches: int, batch: int, seed: int, rounds: int = 2
) -> dict[str, Any]:
    """Wall throughput of the same batches on 2 cores: DataLoader with 2 workers vs cached loader (2 threads).

    Steady state: timed from the 4th batch on, so the workers' start-up and their first prefetched batches
    (prefetch_factor 2 x 2 workers) are left out; the whole epoch's throughput is reported as well.
    """
    torch.set_num_threads(2)
    sampler = ClassRandomBatchSampler(case.labels.tolist(), batch, 2, generator_seed=seed)
    batches = list(
        itertools.islice(itertools.chain.from_iterable(iter(sampler) for _ in itertools.count()), n_batches)
    )
    ds = ImageDataset(case.records, case.train_tf, case.train_tf if mode == "train_2views" else None)
    res: dict[str, dict[str, list[float]]] = {}
    skip = min(4, n_batches - 1)
    for name in ("reference", "cached") * rounds:
        if name == "reference":
            loader: Iterable = DataLoader(ds, batch_sampler=batches, num_workers=2)
        else:
            loader = case.cached(mode, batches, prefetch=True)
        n, steady_s, epoch_s = _steady(loader, skip)
        res.setdefault(name, {"steady": [], "epoch": []})
        res[name]["steady"].append(n / steady_s)
        res[name]["epoch"].append(len(batches) * batch / epoch_s)
    torch.set_num_threads(1)
    out: dict[str, Any] = {f"{k}_images_per_wall_s": float(np.median(v["steady"])) for k, v in res.items()}
    out.update({f"{k}_epoch_images_per_wall_s": float(np.median(v["epoch"])) for k, v in res.items()})
    out["ratio_wall"] = out["cached_images_per_wall_s"] / out["reference_images_per_wall_s"]
    out["ratio_wall_epoch"] = out["cached_epoch_images_per_wall_s"] / out["reference_epoch_images_per_wall_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=500, help="generated JPEGs (CUB sizes)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batches", type=int, default=2, help="batches per timed chunk")
    p.add_argument("--batch", type=int, default=112, help="batch size (the reference recipe: 112)")
    p.add_argument("--two-core-batches", type=int, default=16, help="batches per 2-core epoch")
    p.add_argument("--quick", action="store_true", help="240 JPEGs, 2 rounds, 1 batch per chunk")
    p.add_argument("--no-demo", action="store_true", help="skip the demo data set")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.quick:
        args.images, args.rounds, args.batches, args.two_core_batches = 240, 2, 1, 6
    if args.images < 2 * args.batch or args.batch % 2 or min(args.rounds, args.batches) < 1:
        p.error("need --images >= 2 * --batch, an even --batch and --rounds, --batches >= 1")
    out_path = args.out or RESULTS_DIR / ("data_pipeline_quick.json" if args.quick else "data_pipeline.json")
    torch.set_num_threads(1)
    monitor = LoadMonitor()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dcml-bench-data-") as tmp:
        jpegs = make_jpegs(Path(tmp) / "jpegs", args.images)
        cases = {"cub_like_jpeg_224": Case(jpegs, 224, 256, (0.08, 1.0), Path(tmp) / "cache")}
        if not args.no_demo:
            demo = load_records("demo", None).train
            cases["demo_png_64"] = Case(demo, 64, 72, (0.5, 1.0), Path(tmp) / "cache")
        for name, case in cases.items():
            sizes = [os.path.getsize(r.path) for r in case.records]
            res: dict[str, Any] = {
                "n_images": len(case.records),
                "mean_file_kb": float(np.mean(sizes) / 1024),
                "cache_build_s": case.build_s,
                "eval_crops_build_s": case.eval_build_s,
                "cache_mb": case.cache.meta["n_bytes"] / 1e6,
            }
            for mode in ("train_1view", "train_2views", "eval"):
                res[mode] = per_core(case, mode, args.rounds, args.batches, args.batch, seed=1)
                r = res[mode]
                ref, ours = (r[k]["images_per_cpu_s_median"] for k in ("reference", "cached"))
                print(
                    f"{name:18s} {mode:13s} per core: reference {ref:7.0f} img/cpu-s, cached {ours:7.0f} "
                    f"img/cpu-s -> ratio {r['ratio_cpu']:.1f}x (wall ratio {r['ratio_wall']:.1f}x)",
                    flush=True,
                )
            for mode in ("train_1view", "train_2views"):
                res[f"{mode}_2cores"] = t = two_cores(case, mode, args.two_core_batches, args.batch, seed=2)
                ref, ours = t["reference_images_per_wall_s"], t["cached_images_per_wall_s"]
                print(
                    f"{name:18s} {mode:13s} 2 cores: reference {ref:7.0f} img/s (2 workers), cached "
                    f"{ours:7.0f} img/s -> {t['ratio_wall']:.1f}x (epochs {t['ratio_wall_epoch']:.1f}x)",
                    flush=True,
                )
            results[name] = res
    load = monitor.stop()
    print(describe_load(load))
    settings = {k: getattr(args, k) for k in ("images", "rounds", "batches", "batch", "quick")}
    save_json(
        out_path, {"machine": machine_info("cpu"), "load": load, "settings": settings, "results": results}
    )
    print(f"results: {out_path}")


if __name__ == "__main__":
    main()
