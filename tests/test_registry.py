"""The registries: strict names, None-pruning build, suggestions, and the reference order of the heads."""

from __future__ import annotations

import pytest

from dcml_core.config import ConfigError, ExperimentConfig
from dcml_core.head_names import DEEP_CLUSTERING, DIVA_HEADS
from dcml_core.registry import HEADS, LOSSES, METRICS, MINERS, Registry, RegistryError


def test_register_build_and_available_in_order() -> None:
    reg: Registry = Registry("widget")

    @reg.register("b")
    def b(size: int = 3, colour: str = "red") -> tuple[int, str]:
        return size, colour

    reg.register("a")(lambda: "a")
    assert reg.available() == ("b", "a") and "b" in reg and "c" not in reg
    assert reg.build("b", size=None, colour="blue") == (3, "blue")  # None keeps the builder's default
    assert reg.get("b") is b


def test_duplicate_names_raise_and_unregister_frees_the_name() -> None:
    reg: Registry = Registry("widget")
    reg.register("x")(int)
    with pytest.raises(RegistryError, match="widget 'x' is already registered"):
        reg.register("x")(float)
    assert reg.unregister("x") is int
    reg.register("x")(float)
    assert reg.get("x") is float
    with pytest.raises(RegistryError, match="a widget name must be a non-empty string"):
        reg.register("")


def test_unknown_name_suggests_and_lists_the_available_names() -> None:
    with pytest.raises(RegistryError) as err:
        LOSSES.build("marign")
    assert str(err.value) == "unknown loss 'marign' (did you mean 'margin'?); available: margin"
    with pytest.raises(RegistryError, match=r"unknown miner 'zzz'; available: .*distance"):
        MINERS.get("zzz")


def test_builtins_are_registered_on_first_use() -> None:
    assert set(MINERS.available()) == {"distance", "rho_distance", "random_distance", "shared_neg_distance",
                                       "intra_random"}
    assert METRICS.available() == ("recall", "nmi", "f1", "map_c", "map@r")
    # the registration order is the order in which the objective sums the head terms (reference order)
    assert HEADS.available() == (*DIVA_HEADS, DEEP_CLUSTERING)
    assert [HEADS.get(h).name for h in HEADS.available()] == ["disc", "ssl", "shared", "intra", "dc"]
    assert [h for h in HEADS.available() if HEADS.get(h).second_view] == ["selfsimilarity"]
    assert [h for h in HEADS.available() if not HEADS.get(h).decorrelates] == [DEEP_CLUSTERING]


@pytest.mark.parametrize(
    "group, value, words",
    [
        ({"loss": {"name": "marign"}}, "marign", ["'loss.name'", "did you mean 'margin'"]),
        ({"miner": {"name": "distnce"}}, "distnce", ["'miner.name'", "did you mean 'distance'"]),
        ({"model": {"method": "diva", "features": ["discriminative", "shard"]}}, "shard",
         ["'model.features'", "did you mean 'shared'"]),
        ({"eval": {"metrics": ["recall", "nmi@10"]}}, "nmi@10", ["'eval.metrics'", "available: recall, nmi"]),
    ],
)
def test_config_names_select_from_the_registries(group, value, words) -> None:
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(group)
    assert f"invalid value {value!r}" in str(err.value)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_miner_name_selects_the_discriminative_miner() -> None:
    from dcml_core.miners import DistanceWeightedMiner, RhoDistanceMiner
    from dcml_core.models import build_model
    from dcml_core.objective import build_objective

    for name, kind in (("distance", DistanceWeightedMiner), ("rho_distance", RhoDistanceMiner)):
        cfg = ExperimentConfig.from_dict({"model": {"arch": "resnet18_frozen_normalize", "pretrained": "none",
                                                    "embed_dim": 8}, "miner": {"name": name}})
        model = build_model(method="margin", arch=cfg.model.arch, embed_dim=8, features=cfg.model.features,
                            pretrained="none")
        objective = build_objective(cfg, model, n_train_classes=5, feature_dim=model.feature_dim)
        assert type(objective.terms["disc"].miner) is kind
