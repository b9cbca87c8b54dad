"""Seed-repeat sweeps: ``tune/run.py --repeat-top-k K --seeds N --from NAME`` on a synthetic finished sweep.

The original sweep is written straight into a SQLite MLflow store (parent + three finished trials of the
``smoke`` space with known objectives); the plan's parts are checked against it, then the repeat sweep really
runs (local Ray, 1 epoch per run).
"""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

import search_spaces
from analysis.mlflow_io import load_sweep
from analysis.params import config_id
from analysis.stats import seed_summary
from dcml_core.config import ExperimentConfig
from dcml_core.metric_names import EPOCH, OBJECTIVE
from dcml_core.tracking import param_text
from tests.test_tune_support import REPO, run_sweep_cli, short_tmp, sweep_env, tail, tiny_demo  # noqa: F401
from tune import run
from tune.cli import EXIT_USAGE, UsageError
from tune.repeats import FixedConfigs, config_from_params, repeat_configs, top_k_configs

ORIGINAL = "orig"
OBJECTIVES = [0.30, 0.70, 0.50]  # trial i of the original sweep: the best two are trials 1 and 2


def build_original(
    uri: str, data_root: str, objectives: list[float] = OBJECTIVES, statuses: list[str] | None = None
) -> list[dict]:
    """A finished sweep of the smoke space in MLflow, as the sweep writer writes it; its configs."""
    client = MlflowClient(uri)
    space = search_spaces.get("smoke").with_overrides(data_root=data_root, max_epochs=3)
    configs = [space.build_config(s) for s in space.sample(len(objectives), seed=7)]
    exp = client.create_experiment(ORIGINAL)
    parent = client.create_run(exp, run_name=ORIGINAL, tags={"dcml.sweep": ORIGINAL, "dcml.role": "parent"})
    for i, (cfg, value, status) in enumerate(zip(configs, objectives, statuses or ["FINISHED"] * len(configs))):
        tags = {"mlflow.parentRunId": parent.info.run_id, "dcml.sweep": ORIGINAL, "dcml.role": "trial"}
        run_id = client.create_run(exp, run_name=f"t{i}", tags={**tags, "ray.trial_id": f"t{i}"}).info.run_id
        client.log_batch(run_id, params=[Param(k, param_text(v)) for k, v in cfg.flat().items()])
        metrics = {EPOCH: 3.0, OBJECTIVE: value, f"best/{OBJECTIVE}": value}
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 3) for k, v in metrics.items()])
        client.set_terminated(run_id, status)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return [c.to_dict() for c in configs]


def test_top_k_ranks_finished_configurations_by_mean_and_returns_each_once(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configs = build_original(uri, "/data", [0.3, 0.7, 0.5, 0.9], ["FINISHED", "FINISHED", "FINISHED", "FAILED"])
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(ORIGINAL).experiment_id
    again = client.create_run(exp, tags={"dcml.sweep": ORIGINAL, "dcml.role": "trial"}).info.run_id
    seed9 = ExperimentConfig.from_dict(configs[1]).replace(seed=9)  # t1's configuration again: mean 0.45
    client.log_batch(again, params=[Param(k, param_text(v)) for k, v in seed9.flat().items()])
    client.log_batch(again, metrics=[Metric(f"best/{OBJECTIVE}", 0.2, 0, 3)])
    client.set_terminated(again, "FINISHED")
    assert top_k_configs(uri, ORIGINAL, 2) == [configs[2], configs[1]]  # 0.5, then t1's mean 0.45
    assert len(top_k_configs(uri, ORIGINAL, 10)) == 3  # the failed trial is not repeated
    client.create_experiment("empty")
    with pytest.raises(UsageError, match="no finished trial"):
        top_k_configs(uri, "empty", 1)


def test_repeat_configs_and_the_searcher_that_hands_them_out(tmp_path) -> None:
    base = search_spaces.get("smoke").sample_configs(2, seed=3)
    runs = repeat_configs([c.to_dict() for c in base], range(3), n_epochs=7, data_root="/elsewhere")
    assert [(r["seed"], r["schedule"]["n_epochs"], r["data"]["root"]) for r in runs] == [
        (s, 7, "/elsewhere") for s in (0, 1, 2)
    ] * 2
    assert [r["model"] for r in runs[:3]] == [base[0].to_dict()["model"]] * 3
    assert repeat_configs([base[0].to_dict()], range(1))[0]["schedule"] == base[0].to_dict()["schedule"]
    searcher = FixedConfigs(runs, OBJECTIVE, "max")
    assert [searcher.suggest(f"t{i}") for i in range(2)] == runs[:2]
    searcher.save(str(tmp_path / "state.json"))  # Tune saves it with the sweep; a resumed sweep goes on
    again = FixedConfigs([], OBJECTIVE, "max")
    again.restore(str(tmp_path / "state.json"))
    assert [again.suggest(f"t{i}") for i in range(2, 7)] == [*runs[2:], FixedConfigs.FINISHED]


def test_configurations_come_back_from_mlflow_params() -> None:
    cfg = search_spaces.get("demo").sample_configs(1, seed=1)[0]
    params = {k: param_text(v) for k, v in cfg.flat().items()} | {"data_info.n_train": "5"}
    assert config_from_params(params) == cfg
    assert json.loads(params["model.features"]) == list(cfg.model.features)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--repeat-top-k", "2", "--seeds", "2"], "missing --from"),
        (["--repeat-top-k", "2", "--from", ORIGINAL], "missing --seeds"),
        (["--repeat-top-k", "0", "--seeds", "2", "--from", ORIGINAL], "--repeat-top-k must be >= 1"),
        (["--repeat-top-k", "1", "--seeds", "0", "--from", ORIGINAL], "--seeds must be >= 1"),
        (["--repeat-top-k", "1", "--seeds", "2", "--from", ORIGINAL, "--num-samples", "3"], "--num-samples"),
        (["--repeat-top-k", "1", "--seeds", "2", "--from", "nope"], "--from nope: no such sweep"),
    ],
)
def test_bad_repeat_flags_are_refused_before_ray(capsys, tmp_path, tiny_demo, extra, message) -> None:  # noqa: F811
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if "no such sweep" in message:
        build_original(uri, str(tiny_demo))
    argv = ["--space", "smoke", "--mlflow-uri", uri, "--storage", str(tmp_path / "ray"), *extra]
    assert run.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err, err
    if "no such sweep" in message:
        assert f"available: {ORIGINAL}" in err


def test_dry_run_lists_the_best_configs_times_seeds(capsys, tmp_path, tiny_demo) -> None:  # noqa: F811
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configs = build_original(uri, str(tiny_demo))
    argv = ["--space", "smoke", "--repeat-top-k", "1", "--seeds", "3", "--from", ORIGINAL, "--dry-run"]
    assert run.main([*argv, "--mlflow-uri", uri, "--storage", str(tmp_path / "ray")]) == 0
    out = capsys.readouterr().out
    assert f"Seed repeats of sweep '{ORIGINAL}': best 1 configuration(s) x seeds 0..2 = 3 runs" in out
    for seed in range(3):  # the best configuration (objective 0.70), full length (3 epochs)
        assert f"config {config_id(configs[1])}  seed {seed}  3 epochs" in out
    assert not (tmp_path / "ray").exists()  # a dry run creates nothing


def test_repeat_sweep_reruns_the_best_configs_over_seeds(tmp_path, tiny_demo, short_tmp) -> None:  # noqa: F811
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configs = build_original(uri, str(tiny_demo))
    # --max-epochs 1 changes the configuration, hence its id (without it the ids equal the original's)
    best_ids = {config_id({**c, "schedule": {**c["schedule"], "n_epochs": 1}}) for c in configs[1:]}
    args = f"--space smoke --repeat-top-k 2 --seeds 2 --from {ORIGINAL} --max-epochs 1 --name rep".split()
    args += ["--mlflow-uri", uri, "--storage", str(tmp_path / "ray"), "--max-concurrent", "2"]
    log = tmp_path / "sweep.log"
    code = run_sweep_cli(args, sweep_env(short_tmp), log, cwd=tmp_path, timeout=150)
    assert code == 0, tail(log)

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("rep").experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("dcml.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("dcml.role") == "trial"]
    assert len(parents) == 1 and parents[0].data.tags["dcml.repeat_of"] == ORIGINAL
    assert len(children) == 4
    pairs = set()
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.tags["dcml.repeat_of"] == ORIGINAL
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.data.tags["dcml.config_id"] == config_id(r.data.params)  # the tag is the config's id
        assert r.data.params["schedule.n_epochs"] == "1"
        assert r.data.metrics[EPOCH] == 1.0
        pairs.add((r.data.tags["dcml.config_id"], int(r.data.params["seed"])))
    assert pairs == {(cid, seed) for cid in best_ids for seed in (0, 1)}

    trials = load_sweep("rep", uri, keys=[OBJECTIVE]).trials
    summary = seed_summary(trials, ["objective"])
    assert set(summary["config_id"]) == best_ids
    assert summary["n"].tolist() == [2, 2]
    assert all(sorted(s.split(",")) == ["0", "1"] for s in summary["seeds"])
