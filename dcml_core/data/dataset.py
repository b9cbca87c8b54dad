"""Torch dataset over :class:`Record` lists, and a fast check that every image file can be opened."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from dcml_core.data.records import Record

_MAX_LISTED = 5


def open_rgb(path: str | Path) -> Image.Image:
    """Load an image fully and convert it to RGB (the reference converts every image)."""
    with Image.open(path) as img:
        return img.convert("RGB")


class ImageDataset(Dataset):
    """Items ``(image, label, index)``, or ``(image, label, index, image_b)`` with a second-view transform.

    ``image_b`` is an independent draw of ``second_view_transform`` on the same file (DiVA's MoCo key view B).
    With ``skip_bad=True`` an unreadable file is replaced by the next readable image of the same class (with a
    warning); otherwise it raises ``OSError`` naming the file. Picklable, so it works in DataLoader workers.
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: Callable[[Image.Image], torch.Tensor],
        second_view_transform: Callable[[Image.Image], torch.Tensor] | None = None,
        skip_bad: bool = False,
    ) -> None:
        if len(records) == 0:
            raise ValueError("ImageDataset got no records: the split is empty")
        self.records = list(records)
        self.transform = transform
        self.second_view_transform = second_view_transform
        self.skip_bad = skip_bad
        self._same_class: dict[int, list[int]] = {}
        for i, r in enumerate(self.records):
            self._same_class.setdefault(r.label, []).append(i)

    @property
    def labels(self) -> list[int]:
        """The label of every item, in index order."""
        return [r.label for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple:
        img = self._load(index)
        label = self.records[index].label
        view_a = self.transform(img)  # (3, H, W)
        if self.second_view_transform is None:
            return view_a, label, index
        return view_a, label, index, self.second_view_transform(img)

    def _load(self, index: int) -> Image.Image:
        record = self.records[index]
        try:
            return open_rgb(record.path)
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
            if not self.skip_bad:
                raise OSError(
                    f"cannot read image '{record.path}' (class '{record.class_name}'): {err}. Check the data "
                    "with verify_images() or skip bad files (skip_bad=True)"
                ) from err
            warnings.warn(f"skipping unreadable image '{record.path}': {err}", stacklevel=2)
        peers = self._same_class[record.label]
        start = peers.index(index)
        for other in peers[start + 1 :] + peers[:start]:
            try:
                return open_rgb(self.records[other].path)
            except Exception:  # noqa: BLE001 - try the next image of the class
                continue
        raise OSError(f"no image of class '{record.class_name}' can be read (first: '{record.path}')")


def _verify_one(path: str) -> str | None:
    try:
        with Image.open(path) as img:
            img.verify()  # header and structure only: fast, no decoding
    except Exception as err:  # any failure means the file is unusable
        return f"{type(err).__name__}: {err}"
    return None


def verify_images(
    records: Sequence[Record], skip_bad: bool = False, num_threads: int | None = None
) -> tuple[list[Record], list[str]]:
    """Open every image with PIL ``verify()`` in a thread pool; return ``(good_records, bad_paths)``.

    Raises ``ValueError`` naming the bad files unless ``skip_bad``, in which case they are left out.
    """
    paths = list(dict.fromkeys(r.path for r in records))
    threads = num_threads or min(32, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        errors = {p: e for p, e in zip(paths, pool.map(_verify_one, paths, chunksize=64)) if e is not None}
    if errors and not skip_bad:
        listed = "\n".join(f"  {p}: {e}" for p, e in list(errors.items())[:_MAX_LISTED])
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise ValueError(
            f"{len(errors)} of {len(paths)} images cannot be read:\n{listed}{more}\n"
            "Replace or delete these files, or skip them (skip_bad=True / data.skip_bad_images)."
        )
    if errors:
        warnings.warn(
            f"skipping {len(errors)} of {len(paths)} unreadable images, e.g. {next(iter(errors))}",
            stacklevel=2,
        )
    good = [r for r in records if r.path not in errors]
    return good, list(errors)
