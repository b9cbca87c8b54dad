"""Collapsed embeddings are measured and named, in the engine and in the single-run command."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcml_core.collapse import SPREAD_FLOOR, collapse_message, embedding_spread
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.train import main
from tests.conftest import tiny_config


def test_spread_is_one_for_an_orthonormal_frame_and_zero_for_one_point() -> None:
    d = 16
    frame = torch.cat([torch.eye(d), -torch.eye(d)])  # (2D, D): spread evenly, per-dim std = 1/sqrt(D)
    assert embedding_spread(frame) == pytest.approx(1.0, rel=1e-6)
    point = F.normalize(torch.ones(50, d), dim=-1) + 1e-7 * torch.randn(50, d)
    assert embedding_spread(point) < 1e-5


def test_spread_matches_a_brute_force_computation() -> None:
    emb = torch.randn(30, 7, generator=torch.Generator().manual_seed(0))
    unit = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in emb.tolist()]
    stds = []
    for j in range(7):
        col = [row[j] for row in unit]
        mean = sum(col) / len(col)
        stds.append(math.sqrt(sum((x - mean) ** 2 for x in col) / len(col)))
    assert embedding_spread(emb) == pytest.approx(sum(stds) / 7 * math.sqrt(7), rel=1e-5)


def test_message_names_split_and_value_only_below_the_floor() -> None:
    assert collapse_message({"val/embedding_spread": 0.2}) is None
    assert collapse_message({}) is None
    msg = collapse_message({"val/embedding_spread": SPREAD_FLOOR / 300}, "val")
    assert msg is not None and "val embeddings lie at one point" in msg and "3.3e-05" in msg


def _zero_trunk(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()


def test_engine_reports_spread_and_a_collapsed_network_is_named(tiny_demo_root) -> None:
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, model={"arch": "demo_cnn_normalize"}))
    engine = Engine(cfg, device="cpu")
    healthy = engine.evaluate("val")
    assert healthy["val/embedding_spread"] > 10 * SPREAD_FLOOR
    assert collapse_message(healthy) is None
    _zero_trunk(engine.model)  # every image -> the same features -> the same embedding
    dead = engine.evaluate("val")
    assert dead["val/embedding_spread"] < SPREAD_FLOOR
    assert collapse_message(dead) is not None


def test_single_run_logs_epoch_zero_and_stops_on_collapse(tiny_demo_root, tmp_path, monkeypatch, capsys) -> None:
    train_epoch = Engine.train_epoch

    def collapsing_epoch(self):
        out = train_epoch(self)
        _zero_trunk(self.model)
        return out

    monkeypatch.setattr(Engine, "train_epoch", collapsing_epoch)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main([
        "--dataset", "demo", "--source_path", tiny_demo_root, "--arch", "demo_cnn_normalize", "--n_epochs", "3",
        "--bs", "16", "--kernels", "0", "--crop_size", "32", "--resize_size", "36", "--embed_dim", "8",
        "--evaluation_metrics", "e_recall@1", "--mlflow_uri", uri, "--save_path", str(tmp_path / "run"),
    ])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "run stopped: epoch 1: embeddings collapsed" in err
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dcml_core.train").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["dcml.collapsed"] == "1"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/recall_at_1")]
    assert steps == [0, 1]  # the starting network at step 0, then the collapsed epoch; no epochs 2, 3
    spread = client.get_metric_history(run.info.run_id, "val/embedding_spread")
    assert spread[0].value > 10 * SPREAD_FLOOR and spread[1].value < SPREAD_FLOOR
