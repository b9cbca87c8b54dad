"""Data configuration: dataset, split, batching and the input pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dcml_core.config.coerce import ConfigError, fail


@dataclass(frozen=True)
class DataConfig:
    """Dataset, split and batching (algorithms.md §1.4, §4)."""

    dataset: Literal["cub200", "cars196", "online_products", "demo"] = "demo"  # not cub200: runs with no data
    root: str | None = None  # dataset folder or its parent; None = the embedded demo cache for "demo"
    val_fraction: float = 0.2  # share of TRAIN classes held out as a class-disjoint validation split
    val_seed: int = 0
    batch_size: int = 112
    samples_per_class: int = 2
    sampler: Literal["class_random", "distinct_classes"] = "class_random"
    num_workers: int = 4
    crop_size: int | None = None  # None: 224 (227 for BN-Inception), 64 for the demo data
    resize_size: int | None = None  # None: 256, 72 for the demo data
    augmentation: Literal["base", "realistic"] = "base"
    # RandomResizedCrop scale range; None: torchvision's (0.08, 1) as the reference, (0.5, 1) for the demo data,
    # whose 64 px glyphs small crops would cut away.
    crop_scale: tuple[float, ...] | None = None
    skip_bad_images: bool = False
    verify_images: bool = True
    # "cached": decoded-image cache + batched augmentation on the device (dcml_core/data/cached_pipeline.py);
    # same transform, not the same random draws as "reference" (JPEG decoding + torchvision per image).
    pipeline: Literal["reference", "cached"] = "reference"
    cache_size: int | None = None  # cached pipeline: shorter side kept in the cache; None: 2 x resize size

    def image_sizes(self, arch: str) -> tuple[int, int]:
        """(crop, resize) sizes: the configured ones, else the reference sizes (algorithms.md §4)."""
        if self.dataset == "demo":
            crop, resize = 64, 72
        elif arch.startswith("bninception"):
            crop, resize = 227, 256
        else:
            crop, resize = 224, 256
        return self.crop_size or crop, self.resize_size or max(resize, self.crop_size or crop)

    def resolved_crop_scale(self) -> tuple[float, float]:
        if self.crop_scale is not None:
            return (self.crop_scale[0], self.crop_scale[1])
        return (0.5, 1.0) if self.dataset == "demo" else (0.08, 1.0)

    def validate(self, prefix: str = "data") -> None:
        if self.crop_scale is not None and (
            len(self.crop_scale) != 2 or not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0
        ):
            fail(f"{prefix}.crop_scale", self.crop_scale, "two numbers 0 < low <= high <= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            fail(f"{prefix}.val_fraction", self.val_fraction, "a fraction in [0, 1)")
        for name in ("batch_size", "samples_per_class", "crop_size", "resize_size", "cache_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                fail(f"{prefix}.{name}", getattr(self, name), "a positive integer")
        if self.pipeline == "cached" and self.augmentation != "base":
            raise ConfigError(
                f"'{prefix}.pipeline' 'cached' implements augmentation 'base' only; use pipeline 'reference' "
                f"for augmentation {self.augmentation!r}"
            )
        if self.num_workers < 0:
            fail(f"{prefix}.num_workers", self.num_workers, "an integer >= 0")
        if self.batch_size % self.samples_per_class:
            raise ConfigError(
                f"'{prefix}.batch_size' ({self.batch_size}) must be a multiple of "
                f"'{prefix}.samples_per_class' ({self.samples_per_class}); e.g. use batch_size "
                f"{self.batch_size - self.batch_size % self.samples_per_class or self.samples_per_class}"
            )

