"""Device out-of-memory errors: one error type with the fix in its message, and bounded retries for a device
that other processes share.

A trial that holds a fraction of a GPU (``--gpus-per-trial 0.5``) can run out of memory because its neighbour
peaked, not because of its own configuration. :class:`OomRetry` runs one unit of work (a training step's forward
and backward, an evaluation pass, a queue fill, a re-clustering) and, when CUDA runs out, frees this process's
cached blocks, waits, puts the random-number state back as it was before the unit, and runs it again: a unit that
succeeds on a retry leaves the run exactly as if it had succeeded the first time (up to the non-determinism of
CUDA kernels). Without retries (a whole GPU, the CPU) the first out-of-memory error is final.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class DeviceOutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message names what to lower."""


def is_out_of_memory(err: BaseException) -> bool:
    """torch's CUDA out-of-memory error, or a faiss GPU allocation failure (a RuntimeError saying so)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def free_device_memory() -> None:
    """Drop unreachable tensors and return this process's cached CUDA blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@dataclass
class OomRetry:
    """Runs units of work with up to ``retries`` retries after an out-of-memory error, ``wait_s`` apart.

    ``capture``/``restore`` save and put back the state a unit may change before it fails (random-number
    generators, a sampler); ``say`` reports each retry.
    """

    retries: int = 0
    wait_s: float = 30.0
    capture: Callable[[], Any] = lambda: None
    restore: Callable[[Any], None] = lambda state: None
    say: Callable[[str], None] = print
    retried: int = field(default=0, init=False)  # retries that were needed so far (all units)

    def run(self, fn: Callable[[], T], what: str, fix: str) -> T:
        """``fn()``; on out-of-memory retry it, or raise :class:`DeviceOutOfMemoryError` ``"CUDA out of memory
        in <what>: <fix>"`` once the retries are used up."""
        state = self.capture() if self.retries else None
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - only out-of-memory errors are handled
                if not is_out_of_memory(err):
                    raise
                if attempt == self.retries:
                    tried = f" (still after {self.retries} retries {self.wait_s:g} s apart)" if self.retries else ""
                    raise DeviceOutOfMemoryError(f"CUDA out of memory in {what}{tried}: {fix}") from err
            free_device_memory()  # outside the except block: the traceback no longer holds the tensors
            self.retried += 1
            self.say(
                f"CUDA out of memory in {what}; retry {attempt + 1}/{self.retries} in {self.wait_s:g} s "
                "(the GPU is shared)"
            )
            time.sleep(self.wait_s)
            self.restore(state)
        raise AssertionError("unreachable")  # pragma: no cover
