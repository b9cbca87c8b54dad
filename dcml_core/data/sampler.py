"""Class-balanced batch sampler of the reference code (algorithms.md §1.4, ``class_random_sampler.py``)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

from dcml_core.data.records import Record

_MAX_LISTED = 10


class ClassRandomBatchSampler(Sampler[list[int]]):
    """Yields ``len(labels) // batch_size`` batches of dataset indices per pass (use as ``batch_sampler``).

    Reference behaviour (default): each batch is ``batch_size / samples_per_class`` draws; a draw picks a
    class uniformly **with replacement** (a class can appear twice) and then ``samples_per_class`` of its
    images uniformly **with replacement** (an image can appear twice). The random calls are those of the
    reference (``random.choice`` on the sorted classes, then on the class's indices), made on a private
    ``random.Random(generator_seed)``: seed 0 reproduces the reference's first batch after ``random.seed(0)``.

    ``distinct_classes=True`` (not in the reference; like PML's ``MPerClassSampler``): the classes of a batch
    are distinct, and the images of a class are drawn without replacement, falling back to with-replacement
    only for a class with fewer than ``samples_per_class`` images.

    ``state_dict()`` holds the generator state: saved between passes, it makes the next batches identical.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        samples_per_class: int,
        distinct_classes: bool = False,
        generator_seed: int | None = None,
    ) -> None:
        if batch_size < 1 or samples_per_class < 1:
            raise ValueError(
                f"batch_size ({batch_size}) and samples_per_class ({samples_per_class}) must be >= 1"
            )
        if batch_size % samples_per_class:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of samples_per_class ({samples_per_class})"
            )
        if len(labels) < batch_size:
            raise ValueError(
                f"{len(labels)} training images give no full batch of {batch_size}: lower batch_size"
            )
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.distinct_classes = distinct_classes
        self.draws = batch_size // samples_per_class
        self._indices: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            self._indices.setdefault(int(label), []).append(i)
        self.classes = sorted(self._indices)
        if distinct_classes and self.draws > len(self.classes):
            raise ValueError(
                f"distinct_classes needs batch_size / samples_per_class = {self.draws} distinct classes per "
                f"batch, but there are only {len(self.classes)}: lower batch_size or use the class_random one"
            )
        self._n_batches = len(labels) // batch_size
        self._rng = random.Random(generator_seed)

    def __len__(self) -> int:
        return self._n_batches

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self._n_batches):
            yield self._distinct_batch() if self.distinct_classes else self._reference_batch()

    def _reference_batch(self) -> list[int]:
        rng, batch = self._rng, []
        for _ in range(self.draws):
            members = self._indices[rng.choice(self.classes)]
            batch.extend(rng.choice(members) for _ in range(self.samples_per_class))
        return batch

    def _distinct_batch(self) -> list[int]:
        rng, spc, batch = self._rng, self.samples_per_class, []
        for label in rng.sample(self.classes, self.draws):
            members = self._indices[label]
            batch.extend(rng.sample(members, spc) if len(members) >= spc else rng.choices(members, k=spc))
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The generator state as plain Python values (loadable with ``torch.load(weights_only=True)``)."""
        version, internal, gauss_next = self._rng.getstate()
        return {"version": version, "internal": list(internal), "gauss_next": gauss_next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state saved by :meth:`state_dict`."""
        try:
            self._rng.setstate(
                (state["version"], tuple(int(v) for v in state["internal"]), state["gauss_next"])
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a ClassRandomBatchSampler state: {err}") from err


def check_samples_per_class(records: Sequence[Record], samples_per_class: int) -> None:
    """Raise ``ValueError`` naming every class with fewer than ``samples_per_class`` images."""
    counts = Counter(r.label for r in records)
    names = {r.label: r.class_name for r in records}
    small = sorted((n, lb) for lb, n in counts.items() if n < samples_per_class)
    if small:
        listed = ", ".join(f"'{names[lb]}' (label {lb}): {n}" for n, lb in small[:_MAX_LISTED])
        more = f", ... ({len(small) - _MAX_LISTED} more)" if len(small) > _MAX_LISTED else ""
        raise ValueError(
            f"{len(small)} training class(es) have fewer images than samples_per_class={samples_per_class}: "
            f"{listed}{more}. Lower samples_per_class or remove these classes."
        )
