"""Class-disjoint validation split carved out of the training classes.

The reference code has no working validation split (algorithms.md §7, D7); model selection there is done on
the test set (D10). This split holds out whole training classes, so hyper-parameters can be chosen without
the test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dcml_core.data.records import Record


def n_val_classes(n_classes: int, val_fraction: float) -> int:
    """Held-out class count: ``round(val_fraction * n_classes)`` (half up), at least 1 if the fraction > 0."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return 0
    n_val = max(1, math.floor(val_fraction * n_classes + 0.5))
    if n_classes - n_val < 2:
        raise ValueError(
            f"val_fraction={val_fraction} of {n_classes} training classes leaves {n_classes - n_val} "
            "class(es) for training; at least 2 must remain: lower val_fraction or use more classes"
        )
    return n_val


def class_disjoint_val_split(
    train_records: Sequence[Record], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Record], list[Record], list[str]]:
    """Hold out whole classes: return ``(train, val, val_class_names)``.

    The held-out classes are the ``n_val`` classes (sorted by label) with the smallest keys
    ``numpy.random.default_rng(seed).random(n_classes)``: PCG64 doubles, identical on every platform.
    The remaining training classes are relabelled ``0..C-1`` in label order (the margin loss has one beta per
    training class); validation records keep their labels (they only serve evaluation). With
    ``val_fraction=0`` the validation split is empty and only the relabelling happens.
    """
    labels = sorted({r.label for r in train_records})
    n_val = n_val_classes(len(labels), val_fraction)
    keys = np.random.default_rng(seed).random(len(labels))  # (n_classes,)
    val_labels = {labels[i] for i in np.argsort(keys, kind="stable")[:n_val]}
    new_label = {old: new for new, old in enumerate(lb for lb in labels if lb not in val_labels)}
    train = [
        Record(r.path, new_label[r.label], r.class_name) for r in train_records if r.label not in val_labels
    ]
    val = [r for r in train_records if r.label in val_labels]
    names = {r.label: r.class_name for r in val}
    return train, val, [names[lb] for lb in sorted(val_labels)]
