"""Training and evaluation batches from the decoded-image cache, augmented on the trial's device.

What ``Loaders`` returns for ``data.pipeline = "cached"``: the same batch layout as the reference DataLoader
(``images, labels, indices[, images_b]``), with the images already normalised on the device and labels and
indices int64 on the CPU. Randomness: dataset indices come from the batch sampler's own generator, crop boxes
and flips from the global torch CPU generator, always drawn in the calling thread, in batch order, one batch
ahead; a background thread only renders pixels. The draws therefore depend only on the generator states,
which the engine checkpoints, so resuming stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from dcml_core.data.batch_augment import BatchRandomResizedCrop, Normalize, Resampler
from dcml_core.data.cache import DecodedCache, open_cache
from dcml_core.data.records import Record


class BatchSource(Protocol):
    """A batch sampler: ``len()`` batches of dataset indices per pass."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[list[int]]: ...


def default_cache_size(resize_size: int) -> int:
    """Shorter side kept in the cache by default: twice the eval resize (512 for the reference 256)."""
    return 2 * resize_size


class CachedTrainLoader:
    """Augmented batches ``(images, labels, indices[, images_b])`` of the dataset indices of ``batches``."""

    def __init__(
        self,
        cache: DecodedCache,
        rows: np.ndarray,
        labels: Tensor,
        batches: BatchSource | Sequence[list[int]],
        augment: BatchRandomResizedCrop,
        device: torch.device,
        two_views: bool = False,
        prefetch: bool = True,
    ) -> None:
        self.cache, self.rows, self.labels, self.batches = cache, rows, labels, batches
        self.augment, self.device = augment, torch.device(device)
        self.two_views, self.prefetch = two_views, prefetch
        self.original_hw = torch.from_numpy(np.ascontiguousarray(cache.original_hw))  # (N_cache, 2)
        self.stored_hw = torch.from_numpy(np.ascontiguousarray(cache.stored_hw))  # (N_cache, 2)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        batches = iter(self.batches)
        if not self.prefetch:
            for batch in batches:
                yield self._render(*self._prepare(batch))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcml-augment") as pool:
            pending = self._submit(pool, batches)
            while pending is not None:
                upcoming = self._submit(pool, batches)  # draws the next batch's boxes now, in this thread
                yield pending.result()
                pending = upcoming

    def _submit(self, pool: ThreadPoolExecutor, batches: Iterator[list[int]]) -> Future | None:
        batch = next(batches, None)
        return None if batch is None else pool.submit(self._render, *self._prepare(batch))

    def _prepare(self, batch: list[int]) -> tuple:
        """Dataset indices, cache rows and sampled boxes/flips (all random draws happen here)."""
        indices = torch.as_tensor(batch, dtype=torch.long)  # (B,)
        rows = torch.from_numpy(self.rows[indices.numpy()])  # (B,)
        if self.two_views:
            rows = torch.cat([rows, rows])  # (2B,) view A, then view B
        params = self.augment.sample(self.original_hw[rows], self.stored_hw[rows])
        return indices, rows, params

    def _render(self, indices: Tensor, rows: Tensor, params) -> tuple[Tensor, ...]:
        images = [self.cache.image(r) for r in rows.tolist()]
        n = indices.shape[0]
        x = self.augment.apply(images[:n], params[:n], self.device)  # (B, 3, S, S)
        labels = self.labels[indices]
        if self.two_views:
            return x, labels, indices, self.augment.apply(images[n:], params[n:], self.device)
        return x, labels, indices


class CachedEvalLoader:
    """Unshuffled ``(images, labels, indices)`` batches of precomputed eval crops (Resize -> CenterCrop)."""

    def __init__(
        self,
        crops: np.ndarray,
        rows: np.ndarray,
        labels: Tensor,
        batch_size: int,
        normalize: Normalize,
        device: torch.device,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.crops, self.rows, self.labels, self.batch_size = crops, rows, labels, batch_size
        self.normalize, self.device = normalize, torch.device(device)

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for start in range(0, len(self.rows), self.batch_size):
            indices = torch.arange(start, min(start + self.batch_size, len(self.rows)))  # (B,)
            pixels = torch.from_numpy(self.crops[self.rows[start : start + self.batch_size]])  # (B, C, C, 3)
            pixels = (
                pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()
            )  # (B, 3, C, C)
            yield self.normalize(pixels), self.labels[indices], indices


class CachedPipeline:
    """The decoded cache of every split, batched augmentation and loaders for ``pipeline="cached"``."""

    def __init__(
        self,
        splits: dict[str, Sequence[Record]],
        *,
        crop_size: int,
        resize_size: int,
        batch_size: int,
        device: torch.device,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        arch_input: Literal["rgb", "bninception"] = "rgb",
        cache_size: int | None = None,
        two_views: bool = False,
        name: str = "images",
        cache_home: str | None = None,
        antialias: bool = True,
        resampler: Resampler = "auto",
        prefetch: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        default = default_cache_size(resize_size)
        cache_size = cache_size or default
        if cache_size < crop_size:
            raise ValueError(
                f"data.cache_size ({cache_size}) is below the crop size ({crop_size}): every crop would be "
                f"upscaled from reduced images; use at least {crop_size} (default {default})"
            )
        paths = [r.path for records in splits.values() for r in records]
        self.cache = open_cache(paths, cache_size, home=cache_home, name=name, progress=progress)
        self.rows = {s: self.cache.rows([r.path for r in recs]) for s, recs in splits.items()}
        self.labels = {
            s: torch.tensor([r.label for r in recs], dtype=torch.long) for s, recs in splits.items()
        }
        self.augment = BatchRandomResizedCrop(
            crop_size, scale=crop_scale, arch_input=arch_input, antialias=antialias, resampler=resampler
        )
        self.eval_crops = self.cache.eval_crops(resize_size, crop_size)  # (N_cache, C, C, 3), built once
        self.batch_size, self.device, self.two_views, self.prefetch = batch_size, device, two_views, prefetch

    def train_loader(self, batch_sampler: BatchSource) -> CachedTrainLoader:
        """Batches of the train split drawn by ``batch_sampler`` (two views if the method needs view B)."""
        return CachedTrainLoader(
            self.cache, self.rows["train"], self.labels["train"], batch_sampler, self.augment, self.device,
            two_views=self.two_views, prefetch=self.prefetch,
        )  # fmt: skip

    def eval_loader(
        self, split: str, train_transform: bool = False, batch_size: int | None = None
    ) -> CachedTrainLoader | CachedEvalLoader:
        """Unshuffled batches of a split; ``train_transform`` applies the random training augmentation."""
        if split not in self.rows:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(self.rows)}")
        bs, n = batch_size or self.batch_size, len(self.rows[split])
        if train_transform:
            batches = [list(range(s, min(s + bs, n))) for s in range(0, n, bs)]
            return CachedTrainLoader(
                self.cache, self.rows[split], self.labels[split], batches, self.augment, self.device,
                prefetch=self.prefetch,
            )  # fmt: skip
        return CachedEvalLoader(
            self.eval_crops, self.rows[split], self.labels[split], bs, self.augment.normalize, self.device
        )
