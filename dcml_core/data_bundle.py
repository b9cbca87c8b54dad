"""From a :class:`DataConfig` to checked records, splits, datasets and loaders (no training here).

Everything that can be wrong with the data is checked in :func:`prepare_data`, before a model is built.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from dcml_core.config import ExperimentConfig
from dcml_core.data import (
    ClassRandomBatchSampler,
    ImageDataset,
    Record,
    build_transforms,
    check_samples_per_class,
    class_disjoint_val_split,
    ensure_demo_dataset,
    load_records,
)
from dcml_core.data.cached_pipeline import CachedEvalLoader, CachedPipeline, CachedTrainLoader
from dcml_core.data.seeded import RangeBatches, SeededBatches, SeededDataset
from dcml_core.data.split_checks import check_split_sizes
from dcml_core.data.verified import verify_splits
from dcml_core.models import input_convention
from dcml_core.registry import HEADS


@dataclass(frozen=True)
class DataBundle:
    """The records of every split and what was found while checking them."""

    root: Path
    train: list[Record]
    val: list[Record]
    test: list[Record]
    n_train_classes: int
    val_classes: tuple[str, ...]
    reference_nmi_k: int  # k of the test-set k-means: the number of classes of the full training split (§5)
    bad_files: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, int | str]:
        return {
            "data_root": str(self.root),
            "n_train_images": len(self.train),
            "n_val_images": len(self.val),
            "n_test_images": len(self.test),
            "n_train_classes": self.n_train_classes,
            "n_val_classes": len(self.val_classes),
            "n_bad_files": len(self.bad_files),
        }


def resolve_root(cfg: ExperimentConfig) -> Path:
    """The data root: the configured one, or the embedded demo set (built on first use)."""
    if cfg.data.root:
        return Path(cfg.data.root).expanduser().resolve()
    if cfg.data.dataset == "demo":
        return ensure_demo_dataset()
    raise FileNotFoundError(
        f"no data root given for dataset '{cfg.data.dataset}': pass --source_path DIR (single run) or "
        "--data-root DIR (sweeps), pointing at the folder that holds the images (see README 'Datasets')"
    )


def prepare_data(cfg: ExperimentConfig) -> DataBundle:
    """Load and check the data set, carve the class-disjoint validation split, verify the images."""
    root = resolve_root(cfg)
    records = load_records(cfg.data.dataset, root)
    train, val, val_classes = class_disjoint_val_split(records.train, cfg.data.val_fraction, cfg.data.val_seed)
    bad: list[str] = []
    test = list(records.test)
    if cfg.data.verify_images:  # once per machine for the same files (dcml_core.data.verified)
        good, bad = verify_splits({"train": train, "val": val, "test": test}, cfg.data.skip_bad_images)
        train, val, test = good["train"], good["val"], good["test"]
    check_samples_per_class(train, cfg.data.samples_per_class)  # after skipping bad files
    check_split_sizes(
        train=train,
        val=val,
        test=test,
        val_fraction=cfg.data.val_fraction,
        batch_size=cfg.data.batch_size,
        samples_per_class=cfg.data.samples_per_class,
        recall_ks=cfg.eval.resolved_recall_ks(cfg.data.dataset) if "recall" in cfg.eval.metrics else (1,),
    )
    n_train_classes = len({r.label for r in train})
    return DataBundle(
        root,
        list(train),
        list(val),
        test,
        n_train_classes,
        tuple(val_classes),
        records.n_train_classes,
        tuple(map(str, bad)),
    )


def loader_workers(requested: int, cpus: int) -> int:
    """Loader worker processes for a run allowed ``cpus`` cores: at most ``requested`` (``data.num_workers``)
    and at most ``cpus - 1``, one core staying with the training process (0: load in the main process)."""
    return max(0, min(requested, cpus - 1))


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Loaders:
    """Builds the training and evaluation loaders of a :class:`DataBundle`.

    Two loaders live as long as the run: the training loader and one evaluation loader for every split (its
    batch sampler selects the split). Their worker processes persist across epochs (``data.num_workers``,
    capped by the run's ``cpus``); every item carries its own augmentation seed (:mod:`dcml_core.data.seeded`),
    so the draws, and an exact resume, do not depend on the workers. Pinned memory on CUDA.
    """

    def __init__(self, cfg: ExperimentConfig, bundle: DataBundle, device: torch.device, cpus: int | None = None) -> None:
        self.cfg, self.bundle, self.device = cfg, bundle, device
        self.workers = loader_workers(cfg.data.num_workers, cpus or available_cores())
        crop, resize = cfg.data.image_sizes(cfg.model.arch)
        convention = input_convention(cfg.model.arch)
        two_views = any(HEADS.get(name).second_view for name in cfg.model.features)
        self._tf_args = {"crop_size": crop, "resize_size": resize, "arch_input": convention}
        self._two_views = two_views
        if cfg.data.pipeline != "cached":  # the reference pipeline's torchvision transforms: built (checked) now
            _ = self.train_tf, self.eval_tf
        self.sampler = ClassRandomBatchSampler(
            [r.label for r in bundle.train],
            batch_size=cfg.data.batch_size,
            samples_per_class=cfg.data.samples_per_class,
            distinct_classes=cfg.data.sampler == "distinct_classes",
            generator_seed=cfg.seed,
        )
        self.cached: CachedPipeline | None = None  # pipeline "cached": decoded cache + batch augmentation
        if cfg.data.pipeline == "cached":
            self.cached = CachedPipeline(
                {"train": bundle.train, "val": bundle.val, "test": bundle.test},
                crop_size=crop,
                resize_size=resize,
                batch_size=cfg.eval.batch_size or cfg.data.batch_size,
                device=device,
                crop_scale=cfg.data.resolved_crop_scale(),
                arch_input=convention,
                cache_size=cfg.data.cache_size,
                two_views=two_views,
                name=cfg.data.dataset,
            )
        self._train: DataLoader | None = None
        self._eval: DataLoader | None = None
        self._eval_parts: dict[tuple[str, bool], tuple[int, int]] = {}  # (split, train tf) -> (start, length)
        self._eval_batches = RangeBatches(cfg.eval.batch_size or cfg.data.batch_size)

    @functools.cached_property
    def train_tf(self) -> Any:
        """The reference pipeline's training transform (torchvision: built on first use, so the cached pipeline
        and a sweep's driver never import it)."""
        data = self.cfg.data
        return build_transforms(
            "train", augmentation=data.augmentation, crop_scale=data.resolved_crop_scale(), **self._tf_args
        )

    @functools.cached_property
    def eval_tf(self) -> Any:
        return build_transforms("eval", **self._tf_args)

    @functools.cached_property
    def train_set(self) -> ImageDataset:
        second = self.train_tf if self._two_views else None
        return ImageDataset(self.bundle.train, self.train_tf, second_view_transform=second)

    def _loader(self, dataset: Dataset, batches: Any) -> DataLoader:
        return DataLoader(
            SeededDataset(dataset),
            batch_sampler=SeededBatches(batches),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.workers > 0,
            generator=torch.Generator().manual_seed(self.cfg.seed),  # worker seeds: unused, keep the global RNG
        )

    def train_loader(self) -> DataLoader | CachedTrainLoader:
        """Class-balanced batches of (image, label, index[, view B])."""
        if self.cached is not None:
            return self.cached.train_loader(self.sampler)
        if self._train is None:
            self._train = self._loader(self.train_set, self.sampler)
        return self._train

    def train_pass(self) -> Iterator[list[torch.Tensor]]:
        """Batches of one training pass that the caller may leave early (the MoCo queue fill): the sampler then
        stands after the batches used, not after those the workers had already fetched ahead."""
        before, used = self.sampler.state_dict(), 0
        try:
            for batch in self.train_loader():
                used += 1
                yield batch
        finally:
            if used < len(self.sampler):
                self.sampler.load_state_dict(before)
                for _ in zip(range(used), self.sampler):
                    pass

    def eval_loader(
        self, split: str, train_transform: bool = False
    ) -> DataLoader | CachedTrainLoader | CachedEvalLoader:
        """Unshuffled loader of a split (``train_transform`` for the deep-clustering embedding pass)."""
        if self.cached is not None:
            return self.cached.eval_loader(split, train_transform)
        if self._eval is None:
            parts, start = [], 0
            for name, augment in (("train", False), ("val", False), ("test", False), ("train", True)):
                records = {"train": self.bundle.train, "val": self.bundle.val, "test": self.bundle.test}[name]
                if records:
                    parts.append(ImageDataset(records, self.train_tf if augment else self.eval_tf))
                    self._eval_parts[(name, augment)] = (start, len(records))
                    start += len(records)
            self._eval = self._loader(ConcatDataset(parts), self._eval_batches)
        self._eval_batches.select(*self._eval_parts[(split, train_transform)])
        return self._eval
