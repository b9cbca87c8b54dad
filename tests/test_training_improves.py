"""Short training runs on the demo data lower the loss and beat the untrained network on unseen classes."""

from __future__ import annotations

import pytest
import torch

from dcml_core.config import ExperimentConfig
from dcml_core.data import ensure_demo_dataset
from dcml_core.engine import Engine
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def demo16(tmp_path_factory) -> str:
    return str(ensure_demo_dataset(tmp_path_factory.mktemp("demo16") / "d", n_per_class=16, image_size=32))


@pytest.mark.parametrize("method", ["margin", "diva", "dcml"])
def test_training_beats_the_untrained_network(method, demo16):
    torch.set_num_threads(2)
    cfg = ExperimentConfig.from_dict(
        tiny_config(demo16, method, data={"val_fraction": 0.5}, schedule={"n_epochs": 3},
                    eval={"metrics": ["recall"]}, seed=0)
    )
    engine = Engine(cfg)
    untrained = engine.evaluate("val")["val/recall_at_1"]
    losses = [engine.train_epoch()["train/loss"] for _ in range(cfg.schedule.n_epochs)]
    trained = engine.evaluate("val")["val/recall_at_1"]
    assert losses[-1] < losses[0], losses
    assert trained > untrained + 0.02, (untrained, trained)
