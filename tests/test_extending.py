"""Adding a loss, a miner, a metric or a head costs one file: each toy here is registered from this file only
and picked up end to end (configuration, training or evaluation on the demo data, command line, MLflow, report).

Each fixture registers its toy and unregisters it afterwards, so the rest of the suite sees the built-ins only.
"""

from __future__ import annotations

import shlex
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from analysis import load_sweep
from analysis.tables import paper_table
from dcml_core import train
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.evaluation import compute_metrics
from dcml_core.metrics import MetricInputs, metric_label, register_metric
from dcml_core.objective import MinedHead, TermContext
from dcml_core.registry import HEADS, LOSSES, METRICS, MINERS
from tests.conftest import tiny_config


# ----------------------------------------------------------------------------------------------- a loss
class ToyTripletLoss(nn.Module):
    """Plain triplet hinge ``mean relu(d_ap - d_an + margin)``; records what it saw."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin, self.seen = margin, []

    def forward(self, embeddings, labels, indices_tuple):
        a, p, n = indices_tuple
        value = torch.relu((embeddings[a] - embeddings[p]).norm(dim=1) - (embeddings[a] - embeddings[n]).norm(dim=1)
                           + self.margin).mean()
        self.seen.append((embeddings.detach().clone(), [t.clone() for t in indices_tuple], float(value.detach())))
        return value


@pytest.fixture
def toy_loss():
    @LOSSES.register("toy_triplet")
    def toy_triplet(cfg, n_classes):
        return ToyTripletLoss(cfg.margin)

    yield ToyTripletLoss
    LOSSES.unregister("toy_triplet")


def test_a_registered_loss_is_selected_and_trained(toy_loss, tiny_demo_root):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, loss={"name": "toy_triplet", "margin": 0.3}))
    engine = Engine(cfg, device="cpu")
    out = engine.train_epoch()
    loss = engine.objective.terms["disc"].loss
    assert isinstance(loss, toy_loss) and loss.seen and len(engine.optimizer.param_groups) == 1  # no beta
    assert out["train/loss_disc"] == pytest.approx(np.mean([v for *_, v in loss.seen]), rel=1e-6)
    emb, (a, p, n), value = loss.seen[-1]
    brute = np.mean([max(0.0, float(torch.dist(emb[i], emb[j]) - torch.dist(emb[i], emb[k])) + 0.3)
                     for i, j, k in zip(a.tolist(), p.tolist(), n.tolist())])
    assert value == pytest.approx(brute, rel=1e-5)
    args = train.build_parser().parse_args(["--dataset", "demo", "--loss", "toy_triplet"])
    assert train.config_from_args(args).loss.name == "toy_triplet"


# ---------------------------------------------------------------------------------------------- a miner
class ToyBatchHardMiner:
    """For every anchor with a positive: its farthest positive and its closest negative."""

    def __init__(self) -> None:
        self.calls = []

    @torch.no_grad()
    def __call__(self, embeddings, labels, generator=None):
        dist = torch.cdist(embeddings, embeddings)  # (B, B)
        same = labels[:, None] == labels[None, :]
        pos = same & ~torch.eye(len(labels), dtype=torch.bool)
        anchors = pos.any(1).nonzero().squeeze(1)
        positives = dist.masked_fill(~pos, -1)[anchors].argmax(1)
        negatives = dist.masked_fill(same, float("inf"))[anchors].argmin(1)
        self.calls.append((embeddings.clone(), labels.clone(), (anchors, positives, negatives)))
        return anchors, positives, negatives


@pytest.fixture
def toy_miner():
    MINERS.register("toy_batch_hard")(lambda cfg: ToyBatchHardMiner())
    yield ToyBatchHardMiner
    MINERS.unregister("toy_batch_hard")


def test_a_registered_miner_is_selected_and_feeds_the_loss(toy_miner, tiny_demo_root):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, miner={"name": "toy_batch_hard"}))
    engine = Engine(cfg, device="cpu")
    assert np.isfinite(engine.train_epoch()["train/loss_disc"])
    miner = engine.objective.terms["disc"].miner
    assert isinstance(miner, toy_miner) and len(miner.calls) == len(engine.loaders.train_loader())
    emb, labels, (a, p, n) = miner.calls[-1]
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()):  # brute force over the batch
        others = [m for m in range(len(labels)) if m != i]
        assert float(torch.dist(emb[i], emb[j])) == max(float(torch.dist(emb[i], emb[m])) for m in others
                                                         if labels[m] == labels[i])
        assert float(torch.dist(emb[i], emb[k])) == min(float(torch.dist(emb[i], emb[m])) for m in others
                                                         if labels[m] != labels[i])


# --------------------------------------------------------------------------------------------- a metric
@pytest.fixture
def toy_metric():
    @register_metric("toy_p@1", needs="knn", knn_depth=lambda m: 1, label="P@1")
    def precision_at_1(m: MetricInputs) -> float:
        return float((m.knn_labels[:, 0] == m.labels).mean())

    yield precision_at_1
    METRICS.unregister("toy_p@1")


def test_a_registered_metric_is_evaluated_logged_and_labelled(toy_metric, tiny_demo_root, tmp_path):
    assert "toy_p@1" in ExperimentConfig().eval.metrics  # allowed, and evaluated by default
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((60, 8)).astype(np.float32), np.repeat(np.arange(12), 5)
    d = ((x[:, None] - x[None]) ** 2).sum(-1) + np.diag(np.full(60, np.inf))
    out = compute_metrics(x, labels, recall_ks=(1, 4), metrics=("recall", "toy_p@1"))
    assert out["toy_p@1"] == np.mean(labels[d.argmin(1)] == labels) == out["recall@1"]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = shlex.split(
        f"--dataset demo --source_path {tiny_demo_root} --arch resnet18_frozen_normalize --n_epochs 1 --bs 32 "
        f"--embed_dim 16 --crop_size 32 --resize_size 36 --kernels 0 --lr 1e-3 --evaluation_metrics e_recall@1 "
        f"toy_p@1 --mlflow_uri {uri} --experiment_name toy --save_path {tmp_path / 'run'} --threads 2"
    )
    assert train.main(argv) == 0
    trials = load_sweep("toy", uri).trials
    for split in ("val", "test"):
        assert trials[f"final_{split}/toy_p_at_1" if split == "val" else "oracle_test/toy_p_at_1"].notna().all()
    assert metric_label("toy_p_at_1") == "P@1"
    table = paper_table(trials, selection="oracle")
    assert table["P@1"].iloc[0] == pytest.approx(trials["oracle_test/toy_p_at_1"].iloc[0])


# ----------------------------------------------------------------------------------------------- a head
@pytest.fixture
def toy_head():
    @HEADS.register("toy")
    class ToyHead(MinedHead):
        """The configured loss on triplets inside one class, weight 0.5."""

        name, head = "toy", "toy"

        def __init__(self, ctx: TermContext) -> None:
            super().__init__(ctx, miner="intra_random", weight=0.5)

    yield ToyHead
    HEADS.unregister("toy")


def test_a_registered_head_is_built_trained_and_evaluated(toy_head, tiny_demo_root):
    d = tiny_config(tiny_demo_root, "diva", model={"features": ["discriminative", "toy"]},
                    eval={"evaltypes": ["discriminative", "toy", "Combined_discriminative_toy-1-1"]})
    engine = Engine(ExperimentConfig.from_dict(d), device="cpu")
    assert list(engine.objective.terms) == ["disc", "toy"] and "toy" in engine.model.heads
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = engine.train_epoch()
    assert out["train/loss"] == pytest.approx(out["train/loss_disc"] + out["train/loss_toy"], rel=1e-5)
    metrics = engine.evaluate("val")
    assert {"val/recall_at_1", "val/toy/recall_at_1", "val/combined_discriminative_toy_1-1/recall_at_1"} <= set(
        metrics)
    args = train.build_parser().parse_args(["--dataset", "demo", "--diva_features", "discriminative", "toy"])
    assert train.config_from_args(args).model.features == ("discriminative", "toy")
