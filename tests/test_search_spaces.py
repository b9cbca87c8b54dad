"""Every search space samples into valid configurations, centred on the paper settings; a new space is found
without any list (a toy space module is picked up by ``--list``, ``--dry-run`` and the validation)."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest
from ray.tune.search.sample import Categorical, Float, Integer

import search_spaces
from dcml_core.config import ExperimentConfig
from dcml_core.evaluation import expand_evaltypes
from dcml_core.metric_names import OBJECTIVE
from search_spaces import SearchSpaceError
from search_spaces.common import asha_after_lr_drop
from tests.test_tune_support import tiny_demo  # noqa: F401  (session fixture)
from tune import run
from tune.optuna_search import PrunedAwareOptunaSearch

NAMES = search_spaces.available()
DIVA_PARAMS = [
    "diva.alpha_ssl",
    "diva.alpha_shared",
    "diva.alpha_intra",
    "diva.rho_decorrelation",
    "diva.moco_temperature",
]
COMMON_PARAMS = ["optim.lr", "schedule.tau", "schedule.gamma"]


def test_every_space_module_is_found_and_helper_modules_are_not() -> None:
    published = {"dcml_cub", "dcml_cars", "dcml_sop", "diva_cub", "diva_cars", "diva_sop", "margin_cub"}
    assert published | {"demo", "smoke"} <= set(NAMES) and NAMES == sorted(NAMES)
    assert not {"common", "search_space"} & set(NAMES)  # modules without SPACE


TOY = """
    from ray import tune
    from dcml_core.metric_names import OBJECTIVE
    from search_spaces.smoke import SPACE as SMOKE

    SPACE = {**SMOKE, "model": {**SMOKE["model"], "compos_num": tune.choice(COMPOS)}, "optim": {"lr": 3e-4}}
    METRIC, MODE = OBJECTIVE, "max"
    SCHEDULER = {"grace_period": 1, "reduction_factor": 2, "max_t": SMOKE["schedule"]["n_epochs"]}
    DEFAULTS = {"num_samples": 3, "cpus_per_trial": 1}
    DESCRIPTION = "toy space of a test"
"""


@pytest.fixture()
def toy_space(tmp_path, monkeypatch):
    """Write a space module into a folder of the search_spaces package (here: an extra folder of its path)."""

    def write(compos: list[int]) -> None:
        (tmp_path / "toy.py").write_text(textwrap.dedent(TOY).replace("COMPOS", repr(compos)))
        sys.modules.pop("search_spaces.toy", None)

    monkeypatch.setattr(search_spaces, "__path__", [*search_spaces.__path__, str(tmp_path)])
    yield write
    sys.modules.pop("search_spaces.toy", None)


def test_a_new_space_is_one_module_found_by_list_dry_run_and_validation(
    toy_space, tiny_demo, tmp_path, capsys  # noqa: F811
) -> None:
    toy_space([2, 4])
    assert "toy" in search_spaces.available() and search_spaces.get("toy").description == "toy space of a test"
    assert run.main(["--list"]) == 0
    assert "toy: toy space of a test\n    3 epochs, samples model.compos_num, model.ensemble_num" in capsys.readouterr().out
    dry = ["--space", "toy", "--data-root", str(tiny_demo), "--dry-run", "--storage", str(tmp_path / "ray")]
    assert run.main([*dry, "--mlflow-uri", str(tmp_path / "mlflow")]) == 0
    out = capsys.readouterr().out
    assert "Search space 'toy': toy space of a test" in out and "All 3 configurations are valid." in out
    with pytest.raises(SearchSpaceError, match="Did you mean 'toy'"):
        search_spaces.get("toyy")

    toy_space([2, 3])  # 3 composites cannot be split over the 2 heads: refused before any data is read
    assert run.main([*dry, "--mlflow-uri", str(tmp_path / "mlflow")]) == 2
    err = capsys.readouterr().err
    assert "search space 'toy': model.compos_num = 3" in err and str(tmp_path / "toy.py") in err, err


def test_a_broken_space_module_is_named() -> None:
    with pytest.raises(SearchSpaceError, match="search space module 'nope' cannot be imported"):
        search_spaces._module("nope")


def test_unknown_space_names_the_available_ones_and_a_suggestion() -> None:
    with pytest.raises(SearchSpaceError) as err:
        search_spaces.get("dcml_cbu")
    assert "did you mean 'dcml_cub'" in str(err.value).lower()
    assert "diva_sop" in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_every_sample_builds_a_valid_configuration(name: str) -> None:
    space = search_spaces.get(name)
    samples = space.sample(12, seed=3)
    for sample in samples:
        cfg = space.build_config(sample)
        assert isinstance(cfg, ExperimentConfig)
        assert cfg.schedule.n_epochs == space.n_epochs == space.scheduler["max_t"]
        assert isinstance(cfg.schedule.tau, tuple) and all(isinstance(t, int) for t in cfg.schedule.tau)
        # the primary evaltype exists for these heads (else the engine fails at its first evaluation)
        assert expand_evaltypes(cfg.eval.evaltypes, cfg.model.features, cfg.data.dataset)
        if cfg.model.method == "dcml":
            assert cfg.model.compos_num % len(cfg.model.features) == 0
    # different draws really differ, and the same seed gives the same draws
    assert len({repr(s) for s in samples}) == len(samples)
    assert space.sample(3, seed=3) == samples[:3]


@pytest.mark.parametrize("name", NAMES)
def test_objective_and_scheduler_defaults(name: str) -> None:
    space = search_spaces.get(name)
    assert space.metric == OBJECTIVE and space.mode == "max"
    assert 0 < space.scheduler["grace_period"] <= space.scheduler["max_t"]
    assert space.scheduler["reduction_factor"] > 1
    assert space.description


@pytest.mark.parametrize("name", NAMES)
def test_the_optuna_searcher_accepts_the_space(name: str) -> None:
    space = search_spaces.get(name)
    converted = PrunedAwareOptunaSearch.convert_search_space(space.space)
    assert sorted(converted) == sorted(k.replace(".", "/") for k in space.distributions())


@pytest.mark.parametrize("name", ["dcml_cub", "dcml_cars", "dcml_sop", "demo"])
def test_dcml_spaces_sample_the_required_parameters(name: str) -> None:
    sampled = search_spaces.get(name).distributions()
    for key in ["model.compos_num", "model.ensemble_num", *DIVA_PARAMS, *COMMON_PARAMS]:
        assert key in sampled, key


@pytest.mark.parametrize("name", ["diva_cub", "diva_cars", "diva_sop"])
def test_diva_spaces_sample_the_diva_weights(name: str) -> None:
    space = search_spaces.get(name)
    sampled = space.distributions()
    for key in [*DIVA_PARAMS, *COMMON_PARAMS]:
        assert key in sampled, key
    assert "model.compos_num" not in sampled  # DCML-only knob, meaningless for DiVA
    assert space.constants()["diva.rho_broadcast"] is True


def _contains(domain, value: float) -> bool:
    if isinstance(domain, Categorical):
        return value in domain.categories
    if isinstance(domain, Integer):
        return domain.lower <= value < domain.upper
    assert isinstance(domain, Float)
    return domain.lower <= value <= domain.upper


@pytest.mark.parametrize(
    ("name", "paper"),
    [
        # algorithms.md §3.4: the DCML README command for CUB
        (
            "dcml_cub",
            {
                "optim.lr": 1.5e-5,
                "schedule.tau": 55,
                "schedule.gamma": 0.2,
                "diva.alpha_ssl": 0.5,
                "diva.alpha_shared": 0.3,
                "diva.alpha_intra": 0.3,
                "diva.rho_decorrelation": 1500,
                "diva.moco_temperature": 0.01,
                "model.compos_num": 4,
                "model.ensemble_num": 4,
            },
        ),
        # algorithms.md §2.4: the published DiVA runs
        (
            "diva_cub",
            {
                "optim.lr": 1e-5,
                "schedule.tau": 55,
                "schedule.gamma": 0.2,
                "diva.alpha_ssl": 0.3,
                "diva.rho_decorrelation": 1500,
                "diva.moco_temperature": 0.01,
            },
        ),
        (
            "diva_cars",
            {
                "schedule.tau": 70,
                "schedule.gamma": 0.2,
                "diva.alpha_ssl": 0.15,
                "diva.rho_decorrelation": 100,
            },
        ),
        (
            "diva_sop",
            {"schedule.tau": 70, "schedule.gamma": 0.3, "diva.alpha_ssl": 0.2, "diva.rho_decorrelation": 150},
        ),
        ("margin_cub", {"optim.lr": 1e-5, "schedule.tau": 1000, "loss.margin": 0.2, "loss.beta": 1.2}),
    ],
)
def test_paper_settings_lie_inside_each_space(name: str, paper: dict[str, float]) -> None:
    sampled = search_spaces.get(name).distributions()
    for key, value in paper.items():
        assert _contains(sampled[key], value), (key, value)


@pytest.mark.parametrize(
    ("name", "constants"),
    [
        (
            "dcml_cub",
            {
                "data.dataset": "cub200",
                "data.batch_size": 100,
                "schedule.n_epochs": 300,
                "model.arch": "resnet50_frozen_normalize",
                "diva.moco_n_key_batches": 30,
            },
        ),
        ("diva_cub", {"data.dataset": "cub200", "data.batch_size": 112, "schedule.n_epochs": 350}),
        (
            "diva_sop",
            {"data.dataset": "online_products", "schedule.n_epochs": 150, "diva.moco_n_key_batches": 70},
        ),
        (
            "demo",
            {
                "data.dataset": "demo",
                "model.arch": "demo_cnn_normalize",
                "model.pretrained": "none",
                "model.embed_dim": 32,
                "data.batch_size": 32,
                "data.pipeline": "cached",
                "schedule.n_epochs": 12,
                "diva.moco_n_key_batches": 4,
                "data.num_workers": 0,
            },
        ),
    ],
)
def test_fixed_settings(name: str, constants: dict) -> None:
    fixed = search_spaces.get(name).constants()
    for key, value in constants.items():
        assert fixed[key] == value, key


@pytest.mark.parametrize(
    "name", ["dcml_cub", "dcml_cars", "dcml_sop", "diva_cub", "diva_cars", "diva_sop", "margin_cub"]
)
def test_first_rung_comes_after_every_lr_drop(name: str) -> None:
    space = search_spaces.get(name)
    taus = [t for t in space.distributions()["schedule.tau"].categories if t < space.n_epochs]
    assert space.scheduler["grace_period"] > max(taus)


def test_asha_rule_ignores_milestones_that_never_fire() -> None:
    assert asha_after_lr_drop([30, 50, 1000], 150, reduction_factor=2) == {
        "grace_period": 55,
        "reduction_factor": 2,
        "max_t": 150,
    }
    assert asha_after_lr_drop([500], 100)["grace_period"] == 5  # no drop: rungs from epoch 5


def test_overrides_move_the_rungs_inside_a_shorter_budget_and_set_the_data_root(tmp_path) -> None:
    space = search_spaces.get("dcml_cub").with_overrides(data_root=str(tmp_path), max_epochs=10)
    assert space.n_epochs == 10 and space.scheduler["max_t"] == 10
    assert space.scheduler["grace_period"] == 10 // space.scheduler["reduction_factor"]
    cfg = space.build_config(space.sample(1)[0])
    assert cfg.data.root == str(tmp_path) and cfg.schedule.n_epochs == 10
    assert search_spaces.get("dcml_cub").n_epochs == 300  # the registered space is unchanged
    with pytest.raises(SearchSpaceError, match="max-epochs"):
        search_spaces.get("demo").with_overrides(max_epochs=0)


def test_sampled_values_follow_their_distributions() -> None:
    space = search_spaces.get("dcml_cub")
    samples = space.sample(200, seed=0)
    lrs = [s["optim"]["lr"] for s in samples]
    assert all(1.5e-5 / 3 <= lr <= 1.5e-5 * 3 for lr in lrs)
    # log-uniform: about half of the draws below the geometric centre
    assert 0.35 < sum(lr < 1.5e-5 for lr in lrs) / len(lrs) < 0.65
    assert {s["model"]["compos_num"] for s in samples} == {4, 8, 12}
    assert {s["model"]["ensemble_num"] for s in samples} == set(range(2, 9))
    assert all(math.isfinite(s["diva"]["moco_temperature"]) for s in samples)


PAPER_BASELINES = {  # algorithms.md §2.4 (DiVA R50 rows), §3.4 (DCML README), §1.6 (Revisiting)
    "dcml_cub": {"optim.lr": 1.5e-5, "schedule.tau": 55, "schedule.gamma": 0.2, "diva.alpha_ssl": 0.5,
                 "diva.alpha_shared": 0.3, "diva.rho_decorrelation": 1500.0, "model.compos_num": 4},
    "diva_cub": {"optim.lr": 1e-5, "schedule.tau": 55, "schedule.gamma": 0.2, "diva.alpha_ssl": 0.3,
                 "diva.rho_decorrelation": 1500.0, "diva.moco_temperature": 0.01},
    "diva_cars": {"schedule.tau": 70, "diva.alpha_intra": 0.15, "diva.rho_decorrelation": 100.0},
    "diva_sop": {"schedule.tau": 70, "schedule.gamma": 0.3, "diva.alpha_ssl": 0.2, "diva.rho_decorrelation": 150.0},
    "margin_cub": {"loss.margin": 0.2, "loss.beta": 1.2, "schedule.tau": 1000, "optim.lr": 1e-5},
}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_every_space_has_a_baseline_it_can_draw_that_builds_a_config(name: str) -> None:
    space = search_spaces.get(name)
    assert set(space.baseline) == set(space.distributions())
    for key, value in PAPER_BASELINES.get(name, {}).items():
        assert space.baseline[key] == value, key
    config = space.build_config(space.baseline_config())
    for key, value in space.baseline.items():
        group, leaf = key.split(".")
        got = getattr(getattr(config, group), leaf)
        assert got == value or got == (value,), key  # tau is a list of milestones in the config


def test_the_demo_baseline_is_the_centre_of_its_ranges() -> None:
    base = search_spaces.get("demo").baseline
    assert base["optim.lr"] == 1e-3  # geometric centre of [2.5e-4, 4e-3]
    assert base["model.compos_num"] == 4 and base["model.ensemble_num"] == 4  # middle choice / middle integer
    assert base["schedule.tau"] == 10 and base["schedule.gamma"] == pytest.approx(0.3)  # middle of 9, 10, 11
    assert base["diva.rho_decorrelation"] == 40.0 and base["diva.alpha_ssl"] == 0.1


REST = {"diva.alpha_shared": 0.3, "schedule.gamma": 0.3, "schedule.tau": 1}  # the toy's other sampled values


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ({"model.compos_num": 4, **REST}, r"missing \['model.ensemble_num'\]"),
        ({"model.compos_num": 4, "model.ensemble_num": 2, **REST, "loss.beta": 1.2}, r"not sampled \['loss.beta'\]"),
        ({"model.compos_num": 6, "model.ensemble_num": 2, **REST}, r"model.compos_num=6 \(not one of \[2, 4\]\)"),
        ({"model.compos_num": 2, "model.ensemble_num": 4, **REST}, r"model.ensemble_num=4 \(not an integer in \[2, 3\]\)"),
        ({"model.compos_num": 2, "model.ensemble_num": 2, **REST, "schedule.gamma": 0.9}, r"schedule.gamma=0.9 \(outside"),
    ],
)
def test_a_baseline_the_space_cannot_draw_is_refused(toy_space, tmp_path, baseline, message) -> None:
    toy_space([2, 4])
    with open(tmp_path / "toy.py", "a") as module:
        module.write(f"BASELINE = {baseline!r}\n")
    with pytest.raises(SearchSpaceError, match=message):
        search_spaces.get("toy")
    with open(tmp_path / "toy.py", "a") as module:  # a valid one is taken as given
        module.write(f"BASELINE = {{**{REST!r}, 'model.compos_num': 4, 'model.ensemble_num': 3}}\n")
    sys.modules.pop("search_spaces.toy", None)
    assert search_spaces.get("toy").baseline["model.compos_num"] == 4
