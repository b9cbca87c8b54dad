"""The demo must learn: a short run of the demo space's baseline (its centre) on the full demo data beats the
untrained network's test Recall@1 by a clear factor. If this fails, the README's first command shows a sweep
that acts on noise (issue: "the demo that learns"); see docs/demo.md for what the demo is and why."""

from __future__ import annotations

import pytest
import torch

import search_spaces
from dcml_core.config import ExperimentConfig
from dcml_core.data import ensure_demo_dataset
from dcml_core.engine import Engine

EPOCHS = 8  # of the space's 12: the LR drop (tau 9-11) comes later


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> str:
    return str(ensure_demo_dataset(tmp_path_factory.mktemp("demo_full") / "demo"))  # the default size


def test_the_demo_baseline_beats_the_untrained_network_by_a_clear_factor(demo_root) -> None:
    """Validation Recall@1 (the sweep's objective) climbs well above the untrained network's within 8 epochs, and
    test Recall@1 follows. The exact numbers depend on the CPU's kernels (AVX2 and AVX-512 round differently and the
    trajectories part; docs/demo.md): measured with the default seed, val 0.141 -> best 0.270 and test 0.064 -> 0.099
    with AVX-512, val -> 0.358 and test -> 0.154 with AVX2. An engine that stopped learning stays at its start."""
    torch.set_num_threads(2)
    space = search_spaces.get("demo")
    config = space.baseline_config()
    config["data"]["root"] = demo_root
    config["schedule"]["n_epochs"] = EPOCHS
    engine = Engine(ExperimentConfig.from_dict(config), device="cpu")
    untrained_val = engine.evaluate("val")["val/recall_at_1"]
    untrained = engine.evaluate("test")["test/recall_at_1"]
    best_val = 0.0
    for _ in range(EPOCHS):
        engine.train_epoch()
        best_val = max(best_val, engine.evaluate("val")["val/recall_at_1"])
    trained = engine.evaluate("test")
    assert trained["test/embedding_spread"] > 0.1  # spread out, not collapsed
    assert best_val >= 1.5 * untrained_val and best_val >= untrained_val + 0.08, (untrained_val, best_val)
    assert trained["test/recall_at_1"] >= 1.3 * untrained, (untrained, trained["test/recall_at_1"])
    assert trained["test/recall_at_1"] >= untrained + 0.025, (untrained, trained["test/recall_at_1"])
