"""Recycled, huge-page-backed memory for large CPU batches (used by the batched augmentation)."""

from __future__ import annotations

import contextlib
import math
import mmap
import threading
import weakref

import numpy as np
import torch
from torch import Tensor

_HUGE_PAGE = 2 << 20


class BufferPool:
    """Recycled memory for large CPU batches: after a buffer's first use, no page faults.

    A fresh 67 MB batch (112 x 3 x 224 x 224 float) is first touched in 4 KB page faults that cost more than
    the whole resampling (~0.25 ms per image here). The pool hands a buffer out again only when nothing uses
    it any more: it keeps a weak reference to the numpy array behind the tensor, which the tensor's storage
    (shared by every view, and by ``.numpy()`` arrays) holds until it is freed. New buffers are advised for
    transparent huge pages. Requests below 4 MB, and beyond ``max_buffers`` live buffers, get ``torch.empty``.
    """

    def __init__(self, max_buffers: int = 6) -> None:
        self.max_buffers = max_buffers
        self._buffers: list[tuple[mmap.mmap, weakref.ref | None]] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        """An uninitialised CPU tensor of ``shape`` and ``dtype``."""
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if nbytes < 2 * _HUGE_PAGE:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            slot = next(
                (i for i, (region, ref) in enumerate(self._buffers) if self._fits(region, ref, nbytes)), None
            )
            if slot is None and len(self._buffers) >= self.max_buffers:
                return torch.empty(shape, dtype=dtype)
            region = self._buffers[slot][0] if slot is not None else _new_region(nbytes + _HUGE_PAGE)
            raw = np.frombuffer(region, dtype=np.uint8)
            start = -raw.ctypes.data % _HUGE_PAGE  # huge-page aligned
            array = raw[start : start + nbytes]
            entry = (region, weakref.ref(array))
            if slot is None:
                self._buffers.append(entry)
            else:
                self._buffers[slot] = entry
            return torch.from_numpy(array).view(dtype).view(shape)

    @staticmethod
    def _fits(region: mmap.mmap, ref: weakref.ref | None, nbytes: int) -> bool:
        """Free (its array is gone) and of a suitable size (at most twice what is asked)."""
        return nbytes + _HUGE_PAGE <= len(region) <= 2 * nbytes + _HUGE_PAGE and (
            ref is None or ref() is None
        )


def _new_region(nbytes: int) -> mmap.mmap:
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        with contextlib.suppress(OSError):
            region.madvise(mmap.MADV_HUGEPAGE)
    return region


_POOL = BufferPool()


def empty_cpu(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
    """``torch.empty`` for CPU batches, from the module's :class:`BufferPool`."""
    return _POOL.empty(shape, dtype)
