"""The demo CNN's max-pooling without autograd: ``nn.MaxPool2d(2)`` (the baseline) against
``dcml_core.models.demo_cnn.MaxPool2x2`` (the maximum of four strided slices), on one torch thread as a trial runs.

Two measurements, each as a ratio to the baseline in the same run:

* the three pooling layers of the demo CNN alone, at a batch of 32 images of 32 px (the demo's evaluation batch);
* the whole demo CNN's forward pass over that batch (what evaluating a split and the MoCo key encoder cost).

Both outputs are checked to be bitwise equal before anything is timed. Usage::

    python benchmarks/bench_demo_pool.py            # median of 5 rounds of 50 calls

Prints the times and the ratios (no JSON: docs/performance.md quotes them).
"""

from __future__ import annotations

import statistics
import time

import torch
from common import LoadMonitor, describe_load  # noqa: I001 - common first: it puts the repository on sys.path
from torch import nn

from dcml_core.models.demo_cnn import WIDTHS, DemoCNN, MaxPool2x2

BATCH, SIZE, ROUNDS, CALLS = 32, 32, 5, 50


def per_call_ms(fn, x: torch.Tensor) -> float:
    """Median over rounds of the mean time of one call (ms), after a warm-up."""
    with torch.inference_mode():
        for _ in range(5):
            fn(x)
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(CALLS):
                fn(x)
            times.append((time.perf_counter() - start) / CALLS * 1e3)
    return statistics.median(times)


def with_reference_pooling(model: DemoCNN) -> DemoCNN:
    """The same network (same weights) with ``nn.MaxPool2d(2)`` in place of each ``MaxPool2x2``."""
    layers = [nn.MaxPool2d(2) if isinstance(m, MaxPool2x2) else m for m in model.features]
    reference = DemoCNN()
    reference.load_state_dict(model.state_dict())
    reference.features = nn.Sequential(*layers)
    return reference.eval()


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    monitor = LoadMonitor()
    # the inputs of the three pooling layers: ReLU outputs of the widths before each pool, at 32, 16 and 8 px
    pool_inputs = [torch.relu(torch.randn(BATCH, w, SIZE >> i, SIZE >> i)) for i, w in enumerate(WIDTHS[:-1])]
    fast, reference = MaxPool2x2(), nn.MaxPool2d(2)
    with torch.inference_mode():
        assert all(torch.equal(fast(x), reference(x)) for x in pool_inputs)
    model = DemoCNN().eval()
    baseline = with_reference_pooling(model)
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.equal(model(images), baseline(images))
    rows = []
    for name, new, old, x in [
        *[(f"pool {tuple(x.shape)}", fast, reference, x) for x in pool_inputs],
        (f"DemoCNN forward {tuple(images.shape)}", model, baseline, images),
    ]:
        old_ms, new_ms = per_call_ms(old, x), per_call_ms(new, x)
        rows.append((name, old_ms, new_ms))
    print(f"{'':38s} {'nn.MaxPool2d':>13s} {'MaxPool2x2':>11s} {'speed-up':>9s}")
    for name, old_ms, new_ms in rows:
        print(f"{name:38s} {old_ms:10.3f} ms {new_ms:8.3f} ms {old_ms / new_ms:8.2f}x")
    print(describe_load(monitor.stop()))


if __name__ == "__main__":
    main()
