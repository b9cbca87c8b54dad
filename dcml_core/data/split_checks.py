"""Checks that the splits are large enough for the batches and metrics asked of them (before any training).

Small data sets (the demo, or a user's subset of CUB/CARS/SOP) fail in quiet ways otherwise: a Recall@K with
K above the number of images of a split stops the run at its first evaluation, after training has started; a
validation split of one class scores Recall@1 = 1.0 at every epoch (every neighbour is of the query's class), so
selection silently picks epoch 1; a batch that needs more classes than the training split has repeats classes in
every batch. Each case is refused here with the split, the numbers and the setting to change.
"""

from __future__ import annotations

from collections.abc import Sequence

from dcml_core.data.records import Record


class SplitSizeError(ValueError):
    """A split is too small for the configured batches or metrics; the message names the fix."""


def _classes(records: Sequence[Record]) -> int:
    return len({r.label for r in records})


def split_size_problems(
    *,
    train: Sequence[Record],
    val: Sequence[Record],
    test: Sequence[Record],
    val_fraction: float,
    batch_size: int,
    samples_per_class: int,
    recall_ks: Sequence[int],
) -> list[str]:
    """Every problem found, one sentence each naming the split, the numbers and what to change."""
    problems = []
    n_train = _classes(train)
    per_batch = batch_size // samples_per_class
    if per_batch > n_train:
        problems.append(
            f"each training batch draws {per_batch} classes (data.batch_size {batch_size} / "
            f"data.samples_per_class {samples_per_class}) but the training split has only {n_train} classes, so "
            f"classes would repeat in every batch: lower data.batch_size (--bs) to at most "
            f"{n_train * samples_per_class}, or use a data set with more training classes"
        )
    k_max = max(recall_ks)
    for name, records in (("validation", val), ("test", test)):
        if name == "validation" and val_fraction == 0:
            continue
        n_classes, n_images = _classes(records), len(records)
        if n_classes < 2:
            fix = (
                f"raise data.val_fraction (now {val_fraction}; --val_fraction) so that at least 2 of the "
                f"{n_train + n_classes} training classes are held out, or set it to 0 for no validation split"
                if name == "validation"
                else "use a data set with at least 2 test classes"
            )
            problems.append(
                f"the {name} split has {n_classes} class(es) ({n_images} images): with one class every "
                f"neighbour is of the query's class and Recall@1 is 1.0 whatever the network; {fix}"
            )
        if n_images and k_max > n_images - 1:
            fitting = [k for k in recall_ks if k <= n_images - 1]
            suggestion = f" (e.g. {' '.join(map(str, fitting))})" if fitting else ""
            problems.append(
                f"eval.recall_ks asks for Recall@{k_max} but the {name} split has {n_images} images, so a "
                f"query has at most {n_images - 1} neighbours: lower eval.recall_ks{suggestion} (single runs: the "
                "e_recall@K entries of --evaluation_metrics) or use more images"
            )
    return problems


def check_split_sizes(**kwargs) -> None:
    """Raise :class:`SplitSizeError` listing every problem of :func:`split_size_problems`."""
    problems = split_size_problems(**kwargs)
    if problems:
        raise SplitSizeError("; ".join(problems))
