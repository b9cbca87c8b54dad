"""Random augmentation that does not depend on which process loads an image: one seed per item.

Loader workers that live across epochs (``persistent_workers``) keep their own torch RNG from epoch to epoch,
outside anything a checkpoint can hold, so a resumed run would draw other crops. Here the main process draws one
seed per pass from its global torch RNG (which checkpoints hold) and gives item ``i`` of the pass the seed
``pass_seed + i``; the item's transforms run on the CPU generator seeded with it, restored afterwards. The
draws are then the same with 0, 1 or 8 workers, fresh or persistent, and after an exact resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

_SEED_RANGE = 2**62  # pass seeds; item seeds stay below 2**63 for any realistic pass length


class SeededDataset(Dataset):
    """Items ``dataset[index]`` for keys ``(index, seed)``, computed with the CPU torch RNG seeded by ``seed``.

    Only the CPU generator is touched (and restored), so loading in the main process (0 workers) leaves its
    RNG stream exactly as it was.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            return self.dataset[index]


class SeededBatches:
    """A batch sampler whose batches of indices become batches of ``(index, seed)`` keys (see the module).

    ``batches`` is any re-iterable batch sampler (its own state, e.g. a class-balanced sampler's generator,
    is untouched). The pass seed is drawn from torch's global RNG with the first batch, not by ``iter``: a
    DataLoader with workers calls ``iter`` on its batch sampler twice when it starts, one without workers once.
    """

    def __init__(self, batches: Iterable[Sequence[int]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pass_seed, position = None, 0
        for batch in self.batches:
            if pass_seed is None:
                pass_seed = int(torch.randint(_SEED_RANGE, (1,)).item())
            yield [(int(i), pass_seed + position + j) for j, i in enumerate(batch)]
            position += len(batch)


class RangeBatches:
    """Consecutive batches over ``[start, start + length)`` of a dataset; :meth:`select` moves the range (one
    persistent evaluation loader serves every split)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.start, self.length = batch_size, 0, 0

    def select(self, start: int, length: int) -> None:
        self.start, self.length = start, length

    def __len__(self) -> int:
        return -(-self.length // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        end = self.start + self.length
        for first in range(self.start, end, self.batch_size):
            yield list(range(first, min(first + self.batch_size, end)))
