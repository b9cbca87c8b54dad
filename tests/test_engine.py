"""The training engine: exact resume, loss terms per method, and clear failures."""

from __future__ import annotations

import pytest
import torch

from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from tests.conftest import tiny_config


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _params(engine: Engine) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in engine.model.state_dict().items()}
    state.update({f"objective.{k}": v for k, v in engine.objective.state_dict().items()})
    return state


@pytest.mark.parametrize("method", ["margin", "diva", "dcml"])
def test_resume_is_exact(method, tiny_demo_root, tmp_path):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, method, model={"compos_num": 8} if method == "dcml" else {}))
    straight = Engine(cfg)
    for _ in range(2):
        straight.train_epoch()
    metrics_straight = straight.evaluate("val")

    first = Engine(cfg)
    first.train_epoch()
    first.save(tmp_path / "ckpt")
    del first
    resumed = Engine.restore(tmp_path / "ckpt")
    assert resumed.epoch == 1
    resumed.train_epoch()
    metrics_resumed = resumed.evaluate("val")

    for key, value in _params(straight).items():
        assert torch.equal(value, _params(resumed)[key]), key
    for key in metrics_straight:
        if not key.endswith("eval_time_s"):
            assert metrics_straight[key] == metrics_resumed[key], key
    if method != "margin":
        assert torch.equal(straight.objective.terms["ssl"].queue.queue, resumed.objective.terms["ssl"].queue.queue)
        assert straight.objective.terms["shared"].loss.beta.shape == (straight.data.n_train_classes,)


def test_loss_terms_per_method(tiny_demo_root):
    terms = {}
    for method in ("margin", "diva", "dcml"):
        engine = Engine(ExperimentConfig.from_dict(tiny_config(tiny_demo_root, method, schedule={"n_epochs": 1})))
        out = engine.train_epoch()
        terms[method] = {k for k in out if k.startswith("train/loss_")}
        assert engine.epoch == 1 and out["train/loss"] == pytest.approx(
            sum(out[k] for k in terms[method]), rel=1e-5)
    assert terms["margin"] == {"train/loss_disc"}
    assert terms["diva"] == {f"train/loss_{t}" for t in ("disc", "ssl", "shared", "intra", "sep")}
    assert terms["dcml"] == terms["diva"] | {"train/loss_reinf"}


def test_lr_schedule_steps_per_epoch(tiny_demo_root):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, schedule={"n_epochs": 3, "tau": [1, 2], "gamma": 0.5}))
    engine = Engine(cfg)
    lrs = [engine.train_epoch()["train/lr"] for _ in range(3)]
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4])
    beta_group = engine.optimizer.param_groups[1]
    assert beta_group["weight_decay"] == 0 and beta_group["lr"] == pytest.approx(5e-4 * 0.25)


def test_evaluate_reports_every_evaltype(tiny_demo_root):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, "diva", eval={"evaltypes": ["all"]}))
    metrics = Engine(cfg).evaluate("test")
    assert "test/recall_at_1" in metrics and "test/map_c" in metrics
    combined = [k for k in metrics if k.count("/") == 2 and k.endswith("recall_at_1")]
    assert len(combined) == 2  # three weightings for 4 heads: the first is primary, two carry a suffix
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if "time" not in k)


def test_an_evaluation_between_full_ones_computes_recall_only(tiny_demo_root):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root, "diva", eval={"evaltypes": ["all"], "full_every": 4}))
    engine = Engine(cfg)
    full, cheap = engine.evaluate("val"), engine.evaluate("val", cfg.eval.epoch_metrics(full=False))
    assert cfg.eval.epoch_metrics(full=True) == ("recall", "nmi", "map_c") and cfg.eval.epoch_metrics(False) == ("recall",)
    assert not [k for k in cheap if "nmi" in k or "map_c" in k] and "val/nmi" in full and "val/map_c" in full
    recalls = [k for k in full if "recall_at" in k]
    assert len(recalls) == 3 * 4 and {k: cheap[k] for k in recalls} == {k: full[k] for k in recalls}  # same kNN


def test_nan_loss_fails_with_a_clear_reason(tiny_demo_root, monkeypatch):
    engine = Engine(ExperimentConfig.from_dict(tiny_config(tiny_demo_root)))
    monkeypatch.setattr(engine.objective.terms["disc"].loss, "forward",
                        lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 1, iteration 1"):
        engine.train_epoch()


def test_missing_root_is_reported_before_training(tmp_path):
    cfg = ExperimentConfig.from_dict({"data": {"dataset": "cub200", "root": str(tmp_path / "nowhere")}})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Engine(cfg)


def test_deep_clustering_variant_reclusters_and_resumes(tiny_demo_root, tmp_path):
    cfg = ExperimentConfig.from_dict(
        tiny_config(tiny_demo_root, "diva", model={"features": ["discriminative", "dc"]},
                    diva={"dc_ncluster": 8, "dc_update_f": 2, "rho_decorrelation": [500]}, schedule={"n_epochs": 2})
    )
    engine = Engine(cfg)
    assert "sep" not in engine.objective.terms  # the DC variant has no decorrelation (§2.2.6)
    out = engine.train_epoch()
    labels = engine.objective.terms["dc"].pseudo_labels
    assert labels.shape == (len(engine.data.train),) and 1 < len(labels.unique()) <= 8
    assert "train/loss_dc" in out
    assert engine.optimizer.param_groups[-1]["lr"] == pytest.approx(10 * cfg.optim.lr)
    engine.save(tmp_path / "ck")
    restored = Engine.restore(tmp_path / "ck")
    assert torch.equal(restored.objective.terms["dc"].pseudo_labels, labels)
    assert torch.equal(restored.objective.terms["dc"].loss.classifier.weight, engine.objective.terms["dc"].loss.classifier.weight)


@pytest.mark.parametrize("phase", ["train", "eval"])
def test_device_out_of_memory_names_the_batch_size_to_lower(tiny_demo_root, monkeypatch, phase):
    from dcml_core.engine import DeviceOutOfMemoryError

    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root))
    engine = Engine(cfg, device="cpu")

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine.model, "forward", out_of_memory)
    with pytest.raises(DeviceOutOfMemoryError) as err:
        engine.train_epoch() if phase == "train" else engine.evaluate("val")
    message = str(err.value)
    if phase == "train":
        assert f"in training with batch size {cfg.data.batch_size}" in message and "data.batch_size" in message
    else:
        assert f"in evaluation with batch size {cfg.eval.batch_size}" in message and "eval.batch_size" in message
    assert "--gpus-per-trial" in message


def test_a_staging_checkpoint_restores_the_same_state(tiny_demo_root, tmp_path):
    cfg = ExperimentConfig.from_dict(tiny_config(tiny_demo_root))
    engine = Engine(cfg, device="cpu")
    engine.train_epoch()
    engine.save(tmp_path / "durable")
    engine.save(tmp_path / "staging", durable=False)  # no temp file, rename or fsync
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == ["config.json", "state.pt"]
    a = torch.load(tmp_path / "durable" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "staging" / "state.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert Engine.restore(tmp_path / "staging", device="cpu").epoch == 1
