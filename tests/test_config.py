"""ExperimentConfig: defaults, round trips, and an error that names the key for every bad value."""

from __future__ import annotations

import dataclasses

import pytest

from dcml_core.config import ConfigError, ExperimentConfig


def test_defaults_are_the_reference_defaults():
    cfg = ExperimentConfig()
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (1e-5, 4e-4)
    assert (cfg.loss.margin, cfg.loss.beta, cfg.loss.beta_lr, cfg.loss.nu) == (0.2, 1.2, 5e-4, 0.0)
    assert (cfg.miner.lower_cutoff, cfg.miner.upper_cutoff, cfg.miner.apply_upper_cutoff) == (0.5, 1.4, False)
    assert (cfg.diva.moco_momentum, cfg.diva.moco_temperature, cfg.diva.moco_n_key_batches) == (0.9, 0.1, 50)
    assert cfg.diva.rho_decorrelation == (1500.0,) and cfg.diva.decorrnet_lr == 1e-5
    assert (cfg.data.batch_size, cfg.data.samples_per_class) == (112, 2)
    assert (cfg.model.ensemble_num, cfg.model.compos_num, cfg.model.embed_dim) == (4, 4, 128)


def test_round_trip_and_frozen():
    cfg = ExperimentConfig.from_dict(
        {"model": {"method": "dcml", "features": ["discriminative", "selfsimilarity", "shared", "intra"],
                   "compos_num": 8}, "schedule": {"tau": 55, "gamma": 0.2}}
    )
    assert cfg.schedule.tau == (55,)  # a single value where a list is expected
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert ExperimentConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    flat = cfg.flat()
    assert flat["model.compos_num"] == 8 and flat["schedule.tau"] == [55]


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"modle": {}}, ["unknown configuration key 'modle'", "did you mean 'model'"]),
        ({"model": {"compos_nm": 4}}, ["'model.compos_nm'", "compos_num"]),
        ({"model": {"method": "dcm"}}, ["'model.method'", "'margin', 'diva', 'dcml'", "did you mean 'dcml'"]),
        ({"model": {"arch": "resent50_frozen_normalize"}}, ["'model.arch'", "resnet50_frozen_normalize"]),
        ({"data": {"batch_size": 33}}, ["'data.batch_size' (33)", "multiple of 'data.samples_per_class' (2)"]),
        ({"data": {"val_fraction": 1.5}}, ["'data.val_fraction'", "[0, 1)"]),
        ({"optim": {"lr": "fast"}}, ["'optim.lr'", "a number"]),
        ({"schedule": {"tau": [70, 55]}}, ["'schedule.tau'", "increasing"]),
        ({"schedule": {"gamma": 0}}, ["'schedule.gamma'", "(0, 1]"]),
        ({"eval": {"metrics": ["recall", "auc"]}}, ["'eval.metrics'", "'auc'"]),
        (
            {"model": {"method": "dcml", "features": ["discriminative", "selfsimilarity", "shared", "intra"],
                       "compos_num": 6}},
            ["'model.compos_num' (6)", "multiple of the number of heads (4"],
        ),
        ({"model": {"method": "margin", "features": ["discriminative", "shared"]}}, ["'model.features'", "margin"]),
        ({"diva": {"moco_momentum": 1.0}}, ["'diva.moco_momentum'", "[0, 1)"]),
        ({"seed": "x"}, ["'seed'", "an integer"]),
        ({"device": "tpu"}, ["'device'", "'cuda:N'"]),
    ],
)
def test_bad_values_name_the_key(bad, words):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(bad)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_replace_validates():
    cfg = ExperimentConfig()
    assert cfg.replace(schedule={"n_epochs": 2}).schedule.n_epochs == 2
    with pytest.raises(ConfigError, match="n_epochs"):
        cfg.replace(schedule={"n_epochs": 0})


def test_reference_decorrelation_directions():
    d = ExperimentConfig().diva
    four = ("discriminative", "selfsimilarity", "shared", "intra")
    assert d.resolved_decorrelations(four) == (
        "selfsimilarity-discriminative", "shared-discriminative", "intra-discriminative")
    assert d.resolved_decorrelations(four[:3])[-1] == "shared-selfsimilarity"
    assert d.resolved_decorrelations(("discriminative", "dc")) == ()


def test_image_sizes():
    assert ExperimentConfig.from_dict({"data": {"dataset": "cars196"}}).data.image_sizes("resnet50") == (224, 256)
    cfg = ExperimentConfig.from_dict({"data": {"dataset": "cub200"}})
    assert cfg.data.image_sizes("bninception_normalize") == (227, 256)
    demo = ExperimentConfig.from_dict({"data": {"dataset": "demo"}})
    assert demo.data.image_sizes("resnet18_frozen_normalize") == (64, 72)
