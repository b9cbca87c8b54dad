"""Class-random batch sampler: invariants, golden case 7 statistics and first batch, options, resume."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch

from dcml_core.data import ClassRandomBatchSampler
from tests.golden import load_golden


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with load_golden() as data:
        return {k: data[k] for k in data.files if k.startswith("sampler_")}


def _labels(sizes) -> list[int]:
    return [c for c, n in enumerate(sizes) for _ in range(int(n))]


def _batches(sampler: ClassRandomBatchSampler, n: int) -> list[list[int]]:
    out: list[list[int]] = []
    while len(out) < n:
        out.extend(sampler)
    return out[:n]


def test_invariants_of_every_batch() -> None:
    labels = _labels([5, 1, 7, 3, 9, 2])
    sampler = ClassRandomBatchSampler(labels, batch_size=12, samples_per_class=3, generator_seed=1)
    assert len(sampler) == len(labels) // 12 == len(list(sampler))
    for batch in _batches(sampler, 50):
        assert len(batch) == 12 and all(0 <= i < len(labels) for i in batch)
        for d in range(0, 12, 3):  # each draw: spc indices of one class
            assert len({labels[i] for i in batch[d : d + 3]}) == 1


def test_first_batch_reproduces_the_reference_random_calls(golden) -> None:
    labels = _labels(golden["sampler_class_sizes"])
    sampler = ClassRandomBatchSampler(labels, batch_size=112, samples_per_class=2, generator_seed=0)
    assert len(sampler) == 52  # 5,864 // 112
    assert next(iter(sampler)) == golden["sampler_first_batch_random_seed0"].tolist()


def test_statistics_of_golden_case_7(golden) -> None:
    sizes = golden["sampler_class_sizes"]
    labels = np.array(_labels(sizes))
    batches = np.array(
        _batches(ClassRandomBatchSampler(labels, 112, 2, generator_seed=123), 1000)
    )  # (1000, 112)
    distinct = np.array([len(set(labels[b])) for b in batches])
    duplicates = np.array([112 - len(set(b)) for b in batches])
    repeated_class = np.array([max(Counter(labels[b]).values()) > 2 for b in batches])
    # analytic values for 56 draws with replacement over 100 classes, then 2 images with replacement
    n_classes, draws = len(sizes), 56
    expected_distinct = n_classes * (1 - (1 - 1 / n_classes) ** draws)  # 43.04
    p_image_missed = (1 - (1 - (1 - 1 / sizes) ** 2) / n_classes) ** draws  # (100,) per image of each class
    expected_dup = 112 - float(np.sum(sizes * (1 - p_image_missed)))  # ~2.0
    assert abs(expected_distinct - 43.04) < 0.01
    assert abs(distinct.mean() - expected_distinct) < 0.5
    assert abs(distinct.mean() - golden["sampler_mean_distinct_classes"]) < 0.5
    assert abs(duplicates.mean() - expected_dup) < 0.3
    assert abs(duplicates.mean() - golden["sampler_mean_duplicate_images_per_batch"]) < 0.3
    assert repeated_class.mean() >= 0.99 and golden["sampler_frac_batches_with_repeated_class"] >= 0.99
    assert abs((duplicates > 0).mean() - golden["sampler_frac_batches_with_duplicate_image"]) < 0.05


def test_distinct_classes_option() -> None:
    labels = _labels([4, 2, 1, 6, 3, 5, 2, 2])
    sampler = ClassRandomBatchSampler(labels, 10, 2, distinct_classes=True, generator_seed=3)
    for batch in _batches(sampler, 200):
        draws = [batch[d : d + 2] for d in range(0, 10, 2)]
        classes = [labels[d[0]] for d in draws]
        assert len(set(classes)) == 5 and all(labels[i] == c for d, c in zip(draws, classes) for i in d)
        for d, c in zip(draws, classes):  # without replacement unless the class is too small (class 2 has 1)
            assert len(set(d)) == 2 or c == 2


def test_state_round_trip_gives_identical_next_batches() -> None:
    labels = _labels([7, 5, 9, 4, 6])
    for distinct in (False, True):
        a = ClassRandomBatchSampler(labels, 8, 2, distinct_classes=distinct, generator_seed=5)
        list(a)  # one pass
        buffer = io.BytesIO()
        torch.save(a.state_dict(), buffer)  # checkpoints are loaded with weights_only=True
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        b = ClassRandomBatchSampler(labels, 8, 2, distinct_classes=distinct, generator_seed=999)
        b.load_state_dict(state)
        assert _batches(a, 10) == _batches(b, 10)
    fresh = ClassRandomBatchSampler(labels, 8, 2, generator_seed=5)
    assert list(fresh) != list(fresh)  # the state advances: passes differ
    with pytest.raises(ValueError, match="not a ClassRandomBatchSampler state"):
        fresh.load_state_dict({"version": 3})


def test_seeded_samplers_do_not_touch_the_global_rng() -> None:
    import random

    random.seed(0)
    expected = random.random()
    random.seed(0)
    list(ClassRandomBatchSampler(_labels([3, 3, 3]), 4, 2, generator_seed=0))
    assert random.random() == expected


def test_bad_arguments() -> None:
    labels = _labels([3, 3, 3])
    with pytest.raises(ValueError, match=r"batch_size \(5\) must be a multiple of samples_per_class \(2\)"):
        ClassRandomBatchSampler(labels, 5, 2)
    with pytest.raises(ValueError, match="needs batch_size / samples_per_class = 4 distinct classes.*only 3"):
        ClassRandomBatchSampler(labels, 8, 2, distinct_classes=True)
    with pytest.raises(ValueError, match="9 training images give no full batch of 10"):
        ClassRandomBatchSampler(labels, 10, 2)
    with pytest.raises(ValueError, match="must be >= 1"):
        ClassRandomBatchSampler(labels, 4, 0)


def test_works_as_dataloader_batch_sampler() -> None:
    labels = _labels([4, 4, 4, 4])
    data = torch.utils.data.TensorDataset(torch.arange(16), torch.tensor(labels))
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=ClassRandomBatchSampler(labels, 8, 2, generator_seed=0)
    )
    batches = list(loader)
    assert len(batches) == 2 and all(
        x.shape == (8,) and torch.equal(y, torch.tensor(labels)[x]) for x, y in batches
    )
