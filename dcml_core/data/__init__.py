"""Data sets (CUB200-2011, CARS196, SOP, demo glyphs), splits, transforms and the class-random sampler."""

from dcml_core.data.dataset import ImageDataset, open_rgb, verify_images
from dcml_core.data.demo import default_demo_root, ensure_demo_dataset
from dcml_core.data.layouts import DATASETS, FULL_COUNTS, canonical_dataset_name, load_records
from dcml_core.data.records import Record, SplitRecords
from dcml_core.data.sampler import ClassRandomBatchSampler, check_samples_per_class
from dcml_core.data.splits import class_disjoint_val_split
from dcml_core.data.transforms import build_transforms

__all__ = [
    "DATASETS",
    "FULL_COUNTS",
    "ClassRandomBatchSampler",
    "ImageDataset",
    "Record",
    "SplitRecords",
    "build_transforms",
    "canonical_dataset_name",
    "check_samples_per_class",
    "class_disjoint_val_split",
    "default_demo_root",
    "ensure_demo_dataset",
    "load_records",
    "open_rgb",
    "verify_images",
]
