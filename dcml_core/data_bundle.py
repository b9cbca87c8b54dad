"""From a :class:`DataConfig` to checked records, splits, datasets and loaders (no training here).

Everything that can be wrong with the data is checked in :func:`prepare_data`, before a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

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
    verify_images,
)
from dcml_core.data.cached_pipeline import CachedEvalLoader, CachedPipeline, CachedTrainLoader
from dcml_core.data.split_checks import check_split_sizes
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
    if cfg.data.verify_images:
        train, bad_train = verify_images(train, skip_bad=cfg.data.skip_bad_images)
        val, bad_val = verify_images(val, skip_bad=cfg.data.skip_bad_images)
        test, bad_test = verify_images(test, skip_bad=cfg.data.skip_bad_images)
        bad = [*bad_train, *bad_val, *bad_test]
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


class Loaders:
    """Builds the training and evaluation loaders of a :class:`DataBundle`."""

    def __init__(self, cfg: ExperimentConfig, bundle: DataBundle, device: torch.device) -> None:
        self.cfg, self.bundle, self.device = cfg, bundle, device
        crop, resize = cfg.data.image_sizes(cfg.model.arch)
        convention = input_convention(cfg.model.arch)
        self.train_tf = build_transforms(
            "train",
            crop_size=crop,
            resize_size=resize,
            arch_input=convention,
            augmentation=cfg.data.augmentation,
            crop_scale=cfg.data.resolved_crop_scale(),
        )
        self.eval_tf = build_transforms("eval", crop_size=crop, resize_size=resize, arch_input=convention)
        two_views = any(HEADS.get(name).second_view for name in cfg.model.features)
        self.train_set = ImageDataset(
            bundle.train, self.train_tf, second_view_transform=self.train_tf if two_views else None
        )
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

    def _kwargs(self) -> dict:
        workers = self.cfg.data.num_workers
        return {
            "num_workers": workers,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": False,  # fresh workers per epoch: their seeds follow the torch RNG (exact resume)
        }

    def train_loader(self) -> DataLoader | CachedTrainLoader:
        """Class-balanced batches of (image, label, index[, view B])."""
        if self.cached is not None:
            return self.cached.train_loader(self.sampler)
        return DataLoader(self.train_set, batch_sampler=self.sampler, **self._kwargs())

    def eval_loader(
        self, split: str, train_transform: bool = False
    ) -> DataLoader | CachedTrainLoader | CachedEvalLoader:
        """Unshuffled loader of a split (``train_transform`` for the deep-clustering embedding pass)."""
        if self.cached is not None:
            return self.cached.eval_loader(split, train_transform)
        records = {"train": self.bundle.train, "val": self.bundle.val, "test": self.bundle.test}[split]
        tf = self.train_tf if train_transform else self.eval_tf
        bs = self.cfg.eval.batch_size or self.cfg.data.batch_size
        return DataLoader(ImageDataset(records, tf), batch_size=bs, shuffle=False, **self._kwargs())
