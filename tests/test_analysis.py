"""Tests of analysis/: the helpers against an MLflow store with known values, the tables, the report command.

The store (built once per session, shared with tests/test_notebooks.py) is laid out as tune/mlflow_writer.py
and dcml_core/run_logger.py write it:

* ``sweep_a``: parent + 4 trials (t1 full, t2 stopped early, t3 failed, t4 with a validation tie and no test
  evaluation at its best epoch); 2 CPUs per trial;
* ``sweep_a_repeat``: seed repeats (3 seeds) of t4's and t1's configurations, tagged ``dcml.repeat_of`` and
  ``dcml.config_id``;
* ``single``: one ``python -m dcml_core.train`` run (no parent; lists logged as ``a,b``, as single runs were
  before they shared the sweeps' encoding: still read);
* ``empty_sweep``: a parent run only.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from scipy import stats

from analysis import (
    EmptyExperimentError,
    ExperimentNotFoundError,
    best_configs,
    config_id,
    joined_table,
    latest_experiment,
    latest_experiments,
    list_experiments,
    load_curves,
    load_study,
    load_sweep,
    mean_ci,
    paper_table,
    param_importances,
    seed_summary,
    stack_tables,
    to_latex,
    to_markdown,
)
from analysis.importance import infer_distribution
from analysis.joined import IDENTITY
from analysis.md_html import markdown_to_html
from analysis.params import parse_value
from analysis.report import main as report_main
from analysis.report import oracle_title
from analysis.tables import latex_table, markdown_table
from dcml_core.config import ExperimentConfig

T0 = 1_700_000_000_000  # ms
BASE = {
    "data": {"dataset": "demo", "num_workers": 0},
    "model": {"method": "dcml", "features": ["discriminative", "shared"], "compos_num": 4, "ensemble_num": 2},
    "optim": {"lr": 1e-4},
    "schedule": {"n_epochs": 5, "tau": [3]},
}
# name: (compos_num, lr, status, stopped tag, val R@1 per epoch, {epoch: test R@1})
TRIALS = {
    "t1": (
        4,
        1e-4,
        "FINISHED",
        "false",
        [0.10, 0.30, 0.50, 0.40, 0.45],
        {1: 0.12, 2: 0.28, 3: 0.44, 5: 0.47},
    ),
    "t2": (8, 3e-4, "FINISHED", "true", [0.20, 0.35], {1: 0.18, 2: 0.33}),
    "t3": (4, 3e-5, "FAILED", None, [0.05], {1: 0.04}),
    "t4": (2, 1e-3, "FINISHED", "false", [0.20, 0.30, 0.60, 0.60, 0.55], {1: 0.21, 2: 0.31, 4: 0.58}),
}
# seed repeats: config (of trial) -> per seed (best val R@1, test R@1 at that epoch)
REPEATS = {
    "t4": {1: (0.60, 0.55), 2: (0.64, 0.58), 3: (0.59, 0.52)},
    "t1": {1: (0.50, 0.44), 2: (0.47, 0.41), 3: (0.52, 0.47)},
}


def config(name: str, seed: int = 1) -> ExperimentConfig:
    """The configuration of a trial of ``sweep_a`` (with a given seed)."""
    compos, lr = TRIALS[name][:2]
    d = json.loads(json.dumps(BASE))
    d["model"]["compos_num"], d["optim"]["lr"], d["seed"] = compos, lr, seed
    return ExperimentConfig.from_dict(d)


def tracker_params(cfg: ExperimentConfig) -> dict[str, str]:
    """Params as tune/mlflow_writer.py logs them (JSON lists, str() otherwise)."""
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in cfg.flat().items()}


def val_metrics(r1: float, epoch: int, split: str = "val") -> dict[str, float]:
    """All paper metrics of one evaluation, derived from Recall@1 and the epoch."""
    return {
        f"{split}/recall_at_1": r1,
        f"{split}/recall_at_2": r1 + 0.1,
        f"{split}/recall_at_4": r1 + 0.2,
        f"{split}/recall_at_8": r1 + 0.3,
        f"{split}/nmi": 0.6 + 0.01 * epoch,
        f"{split}/f1": 0.3 + 0.01 * epoch,
        f"{split}/map_c": r1 / 3,
        f"{split}/map_at_r": r1 / 2,
    }


def _log(client: MlflowClient, run_id: str, step: int, metrics: dict[str, float]) -> None:
    client.log_batch(
        run_id, metrics=[Metric(k, float(v), T0 + step * 1000, step) for k, v in metrics.items()]
    )


def _params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def _sweep_run(
    client: MlflowClient,
    exp: str,
    parent: str,
    sweep: str,
    name: str,
    start: int,
    params: dict,
    tags: dict | None = None,
) -> str:
    tags = {
        "mlflow.parentRunId": parent,
        "dcml.sweep": sweep,
        "dcml.role": "trial",
        "ray.trial_id": name,
        **(tags or {}),
    }
    run = client.create_run(exp, start_time=start, run_name=name, tags=tags).info.run_id
    _params(client, run, params)
    return run


def _parent(client: MlflowClient, sweep: str, tags: dict[str, str] | None = None) -> tuple[str, str]:
    exp = client.create_experiment(sweep)
    tags = {"dcml.sweep": sweep, "dcml.role": "parent", **(tags or {})}
    parent = client.create_run(exp, start_time=T0, run_name=sweep, tags=tags).info.run_id
    _params(
        client,
        parent,
        {
            "space": "demo",
            "search": "optuna",
            "scheduler": "asha",
            "seed": 0,
            "gpus_per_trial": 0.0,
            "cpus_per_trial": 2.0,
            "max_epochs": 5,
            "sampled_params": "model.compos_num,optim.lr",
        },
    )
    return exp, parent


def build_sweep_a(client: MlflowClient) -> None:
    exp, parent = _parent(client, "sweep_a")
    for i, (name, (_, _, status, stopped, vals, tests)) in enumerate(TRIALS.items()):
        start = T0 + i * 1_000_000
        run = _sweep_run(client, exp, parent, "sweep_a", name, start, tracker_params(config(name)))
        for epoch, r1 in enumerate(vals, start=1):
            m = {
                **val_metrics(r1, epoch),
                "time/train_s": 10.0,
                "time/eval_s": 2.0,
                "train/loss": 1.0 / epoch,
                "epoch": epoch,
                "val/eval_time_s": 1.5,
                "val/all/recall_at_1": r1 / 2,
            }
            if epoch in tests:
                m.update(val_metrics(tests[epoch], epoch, "test"))
            _log(client, run, epoch, m)
        tags = {"dcml.stopped_early": stopped} if stopped else {"dcml.error": "RuntimeError: boom"}
        client.set_tag(run, *next(iter(tags.items())))
        client.set_terminated(run, status=status, end_time=start + 100_000)
    client.set_terminated(parent, status="FINISHED", end_time=T0 + 10_000_000)


def build_repeat(client: MlflowClient) -> None:
    exp, parent = _parent(client, "sweep_a_repeat", {"dcml.repeat_of": "sweep_a"})
    for i, (trial, per_seed) in enumerate(REPEATS.items()):
        for seed, (val, test) in per_seed.items():
            cfg = config(trial, seed).replace(schedule={"n_epochs": 3})
            tags = {"dcml.repeat_of": "sweep_a", "dcml.config_id": config_id(cfg.flat())}
            start = T0 + (10 * i + seed) * 1_000_000
            run = _sweep_run(
                client, exp, parent, "sweep_a_repeat", f"{trial}_s{seed}", start, tracker_params(cfg), tags
            )
            for epoch, (v, t) in enumerate(
                [(val - 0.2, test - 0.1), (val, test), (val - 0.05, test + 0.03)], 1
            ):
                _log(
                    client,
                    run,
                    epoch,
                    {
                        **val_metrics(v, epoch),
                        **val_metrics(t, epoch, "test"),
                        "time/train_s": 20.0,
                        "time/eval_s": 4.0,
                        "epoch": epoch,
                    },
                )
            client.set_tag(run, "dcml.stopped_early", "false")
            client.set_terminated(run, status="FINISHED", end_time=start + 200_000)
    client.set_terminated(parent, status="FINISHED", end_time=T0 + 90_000_000)


def build_single(client: MlflowClient) -> None:
    """A single run as dcml_core/run_logger.py logged it before it shared the sweeps' parameter encoding: lists
    as ``a,b``, test only at the last epoch."""
    exp = client.create_experiment("single")
    cfg = config("t1").replace(schedule={"n_epochs": 3})
    params = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in cfg.flat().items()}
    params["data_info.n_train"] = "123"
    run = client.create_run(
        exp, start_time=T0, run_name="dcml-demo-s1", tags={"dcml.method": "dcml"}
    ).info.run_id
    _params(client, run, params)
    for epoch, r1 in enumerate([0.3, 0.5, 0.4], start=1):
        m = {**val_metrics(r1, epoch), "train/epoch_time_s": 30.0, "val/eval_time_s": 3.0, "train/loss": 0.5}
        if epoch == 3:
            m.update({**val_metrics(0.35, epoch, "test"), "test/eval_time_s": 6.0})
        _log(client, run, epoch, m)
    client.set_terminated(run, status="FINISHED", end_time=T0 + 500_000)


def build_store(root: Path) -> str:
    """Create the store under ``root``; returns its tracking URI."""
    uri = f"sqlite:///{Path(root) / 'mlflow.db'}"
    client = MlflowClient(uri)
    build_sweep_a(client)
    build_repeat(client)
    build_single(client)
    _parent(client, "empty_sweep")
    return uri


_STORE: dict[str, str] = {}


def shared_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of this module, built once per test session (also used by tests/test_notebooks.py)."""
    if "uri" not in _STORE:
        _STORE["uri"] = build_store(tmp_path_factory.mktemp("analysis_store"))
    return _STORE["uri"]


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def sweep_a(uri: str):
    return load_sweep("sweep_a", uri)


@pytest.fixture(scope="module")
def repeat(uri: str):
    return load_sweep("sweep_a_repeat", uri)


def compact(markdown: str) -> str:
    """Markdown with the padding of table cells removed (``|  a   | b |`` -> ``| a | b |``)."""
    return "\n".join(re.sub(r" *(?<!\\)\| *", " | ", line).strip() for line in markdown.splitlines())


def _row(trials: pd.DataFrame, name: str) -> pd.Series:
    rows = trials[trials["run_name"] == name]
    assert len(rows) == 1, f"expected one run named {name}"
    return rows.iloc[0]


# ---------------------------------------------------------------------------------------------- trial table
def test_trial_table_selects_epochs_and_test_values(sweep_a):
    trials = sweep_a.trials
    assert list(trials["run_name"]) == ["t1", "t2", "t3", "t4"]  # by start time; the parent is not a trial
    t1 = _row(trials, "t1")
    assert (t1["objective"], t1["best_epoch"], t1["final_epoch"]) == (0.50, 3, 5)
    assert t1["final_val/recall_at_1"] == pytest.approx(0.45)
    assert t1["best_val/nmi"] == pytest.approx(0.63) and t1["best_val/all/recall_at_1"] == pytest.approx(0.25)
    assert (t1["sel_test_epoch"], t1["sel_test/recall_at_1"]) == (3, pytest.approx(0.44))
    assert t1["sel_test/recall_at_8"] == pytest.approx(0.74) and t1["sel_test/nmi"] == pytest.approx(0.63)
    assert (t1["oracle_test_epoch"], t1["oracle_test/recall_at_1"]) == (5, pytest.approx(0.47))
    assert t1["oracle_test/nmi"] == pytest.approx(0.65)
    assert (t1["epochs_run"], t1["n_epochs"], bool(t1["stopped_early"])) == (5, 5, False)
    # t4: validation tie at epochs 3 and 4 -> the first; no test at epoch 3 -> the latest before it (2)
    t4 = _row(trials, "t4")
    assert (t4["best_epoch"], t4["sel_test_epoch"], t4["sel_test/recall_at_1"]) == (3, 2, pytest.approx(0.31))
    assert (t4["oracle_test_epoch"], t4["oracle_test/recall_at_1"]) == (4, pytest.approx(0.58))
    assert t4["final_val/recall_at_1"] == pytest.approx(0.55)


def test_trial_table_status_time_cost_and_config(sweep_a):
    trials = sweep_a.trials
    t2, t3, t1 = _row(trials, "t2"), _row(trials, "t3"), _row(trials, "t1")
    assert (
        bool(t2["stopped_early"])
        and t2["epochs_run"] == 2
        and t2["sel_test/recall_at_1"] == pytest.approx(0.33)
    )
    assert t3["status"] == "FAILED" and t3["error"] == "RuntimeError: boom" and not t3["stopped_early"]
    assert t1["wall_time_s"] == pytest.approx(100.0)
    assert t1["compute_s"] == pytest.approx(5 * (10.0 + 2.0))  # time/train_s + time/eval_s per epoch
    assert t1["device_hours"] == pytest.approx(60.0 * 2 / 3600) and t1["device_unit"] == "CPU-core-hours"
    assert (t1["model.compos_num"], t1["optim.lr"], t1["seed"]) == (4, pytest.approx(1e-4), 1)
    assert t1["model.features"] == "discriminative,shared" and t1["schedule.tau"] == 3
    assert t1["config_id"] == config_id(config("t1").flat()) == config_id(config("t1", seed=9).flat())
    assert t1["trial_id"] == "t1" and t1["sweep"] == "sweep_a"
    assert sweep_a.parent["params"]["cpus_per_trial"] == "2.0"


def test_single_run_without_parent(uri):
    trials = load_sweep("single", uri).trials
    assert len(trials) == 1
    run = trials.iloc[0]
    assert run["device_unit"] == "device-hours (1 device assumed)"
    assert run["compute_s"] == pytest.approx(3 * 30.0 + 3 * 3.0 + 6.0)  # train/epoch_time_s + */eval_time_s
    assert run["device_hours"] == pytest.approx(105.0 / 3600)
    assert run["best_epoch"] == 2 and math.isnan(
        run["sel_test_epoch"]
    )  # test only at epoch 3, after the best
    assert (run["oracle_test_epoch"], run["oracle_test/recall_at_1"]) == (3, pytest.approx(0.35))
    assert not run["stopped_early"] and run["model.features"] == "discriminative,shared"
    assert run["config_id"] == config_id(config("t1").replace(schedule={"n_epochs": 3}).flat())


def test_curves_are_long_and_skip_summary_keys(uri):
    curves = load_curves("sweep_a", uri)
    assert list(curves.columns) == ["run_id", "key", "step", "value", "timestamp"]
    trials = load_sweep("sweep_a", uri, keys=["val/recall_at_1"]).trials
    t1 = curves[(curves["run_id"] == _row(trials, "t1")["run_id"])]
    val = t1[t1["key"] == "val/recall_at_1"]
    assert val["step"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(val["value"], TRIALS["t1"][4])
    assert t1[t1["key"] == "test/recall_at_1"]["step"].tolist() == [1, 2, 3, 5]
    assert not curves["key"].str.startswith(("best/", "final/")).any()


def test_reads_what_the_sweep_writer_writes(uri, tmp_path):
    """Contract test against the real writer, tune/mlflow_writer.py (no Ray involved)."""
    from tune.mlflow_writer import SweepWriter
    from tune.repeats import top_k_configs
    from tune.trial_run import TrialLog

    writer = SweepWriter(uri, "tracked", ("model.compos_num", "optim.lr"))
    writer.open({"space": "demo", "gpus_per_trial": 0.0, "cpus_per_trial": 3.0}, {})
    cfg = config("t2")
    log = TrialLog("trial_x", cfg.to_dict())
    for epoch, r1 in enumerate([0.2, 0.4, 0.3], start=1):
        result = {
            "epoch": epoch,
            "val/recall_at_1": r1,
            "time/train_s": 5.0,
            "time/eval_s": 1.0,
            "ray_junk": 1,
        }
        if epoch <= 2:
            result["test/recall_at_1"] = r1 - 0.05
        log.add({**result, "best/val/recall_at_1": max(0.2, r1)})
    log.finish("stopped early", result)  # final/val/recall_at_1 = 0.3
    writer.write(log)
    writer.finish({"best_val": 0.4})
    row = load_sweep("tracked", uri).trials.iloc[0]
    assert (row["best_epoch"], row["sel_test_epoch"], row["sel_test/recall_at_1"]) == (
        2,
        2,
        pytest.approx(0.35),
    )
    assert bool(row["stopped_early"]) and row["epochs_run"] == 3 and row["trial_id"] == "trial_x"
    assert row["compute_s"] == pytest.approx(18.0) and row["device_unit"] == "CPU-core-hours"
    assert row["device_hours"] == pytest.approx(18.0 * 3 / 3600)
    assert row["config_id"] == config_id(cfg.flat()) and row["model.features"] == "discriminative,shared"
    assert top_k_configs(uri, "tracked", 1) == [cfg.to_dict()]


def test_unknown_and_empty_experiments(uri, tmp_path):
    with pytest.raises(ExperimentNotFoundError, match=r"'nope' does not exist.*sweep_a"):
        load_sweep("nope", uri)
    with pytest.raises(EmptyExperimentError, match="no trial runs"):
        load_sweep("empty_sweep", uri)
    with pytest.raises(FileNotFoundError, match="no MLflow database"):
        load_sweep("sweep_a", f"sqlite:///{tmp_path / 'missing.db'}")
    assert {"sweep_a", "sweep_a_repeat", "single", "empty_sweep"} <= set(list_experiments(uri))


def test_joined_table_without_a_study(sweep_a, tmp_path):
    joined = joined_table(sweep_a)
    assert list(joined.columns[:6]) == IDENTITY
    assert joined["ray_trial_id"].tolist() == ["t1", "t2", "t3", "t4"]  # start order without Optuna numbers
    assert joined["optuna_state"].isna().all() and joined["checkpoint"].isna().all()
    sampled = ["model.compos_num", "optim.lr"]  # the parent run's sampled_params, in that order
    assert list(joined.columns[7:9]) == sampled
    rows = joined.set_index("ray_trial_id")
    assert rows.at["t3", "mlflow_status"] == "FAILED" and bool(rows.at["t2", "stopped_early"])
    assert rows.at["t4", "sel_test/recall_at_1"] == pytest.approx(0.31) and rows.at["t4", "epochs_run"] == 5
    assert load_study(sweep_a) is None  # no sweep storage among the parent's parameters
    with pytest.raises(FileNotFoundError, match="no optuna.db"):
        load_study(sweep_a, tmp_path)


def test_latest_experiments_skip_sweeps_without_trials(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp, parent = _parent(client, "older_sweep")
    _sweep_run(client, exp, parent, "older_sweep", "t1", T0, {})
    time.sleep(0.01)
    single = client.create_experiment("single_run")
    client.create_run(single, run_name="s")
    time.sleep(0.01)
    _parent(client, "started_sweep")  # newest, but only its parent run so far
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert latest_experiments(uri, 2) == ["single_run", "older_sweep"] == latest_experiments(uri, 5)
    assert latest_experiment(uri) == "single_run"
    with pytest.raises(ValueError, match="positive"):
        latest_experiments(uri, 0)


def test_best_test_epoch_title_says_how_many_epochs_were_tested(sweep_a, repeat):
    assert oracle_title(repeat.trials) == "best-test-epoch convention (test evaluated at every epoch)"
    # finished trials of sweep_a: t1 tested at 4 of 5 epochs, t2 at 2 of 2, t4 at 3 of 5
    assert "test evaluated at 9 of 12 epochs run" in oracle_title(sweep_a.trials)
    assert _row(sweep_a.trials, "t1")["test_epochs"] == 4


# ------------------------------------------------------------------------------------- best / seeds / tables
def test_best_configs_rank_finished_trials(sweep_a):
    best = best_configs(sweep_a.trials)
    assert best["best_run_name"].tolist() == ["t4", "t1", "t2"]  # t3 failed
    np.testing.assert_allclose(best["objective"], [0.60, 0.50, 0.35])
    assert best["configuration"].iloc[0] == "compos_num=2, lr=0.001"
    assert len(best_configs(sweep_a.trials, k=2)) == 2


def test_seed_summary_matches_scipy(repeat):
    summary = seed_summary(repeat.trials)
    cid = config_id(config("t4").replace(schedule={"n_epochs": 3}).flat())  # the repeats ran 3 epochs
    for metric, values in [
        ("objective", [0.60, 0.64, 0.59]),
        ("sel_test/recall_at_1", [0.55, 0.58, 0.52]),
        ("oracle_test/recall_at_1", [0.58, 0.61, 0.55]),
    ]:
        row = summary[(summary["config_id"] == cid) & (summary["metric"] == metric)].iloc[0]
        low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
        assert row["n"] == 3 and row["seeds"] == "1,2,3"
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(
            np.std(values, ddof=1)
        )
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert repeat.repeat_of == "sweep_a"


def test_mean_ci_edge_cases():
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    one = mean_ci([0.4, float("nan")])
    assert (one.n, one.mean) == (1, 0.4) and math.isnan(one.ci)
    values = [0.1, 0.2, 0.4, 0.35]
    s = mean_ci(values, confidence=0.9)
    assert s.ci == pytest.approx(stats.t.ppf(0.95, 3) * stats.sem(values))
    with pytest.raises(ValueError, match="confidence"):
        mean_ci(values, confidence=95)


def test_paper_tables_markdown_and_latex(repeat, sweep_a):
    t4, t1 = [0.55, 0.58, 0.52], [0.44, 0.41, 0.47]
    half = lambda v: stats.t.ppf(0.975, 2) * stats.sem(v) * 100  # noqa: E731
    table = paper_table(repeat.trials, "val")
    assert table["configuration"].tolist() == ["compos_num=2, lr=0.001", "compos_num=4, lr=0.0001"]
    assert table["R@1"].tolist() == pytest.approx([0.55, 0.44]) and table["n"].tolist() == [3, 3]
    md = compact(to_markdown(table))
    assert "| Configuration | n | R@1 | R@2 | R@4 | R@8 | NMI | F1 | MAP@R |" in md
    assert f"| compos_num=2, lr=0.001 | 3 | 55.00 ± {half(t4):.2f} | 65.00 ± {half(t4):.2f} |" in md
    assert f"| compos_num=4, lr=0.0001 | 3 | 44.00 ± {half(t1):.2f} |" in md
    tex = to_latex(table, caption="DCML: 95% CI")
    assert f"compos\\_num=2, lr=0.001 & 3 & 55.00 $\\pm$ {half(t4):.2f}" in tex
    assert "\\toprule" in tex and "MAP@R \\\\" in tex and "\\caption{DCML: 95\\% CI}" in tex
    oracle = compact(to_markdown(paper_table(repeat.trials, "oracle")))
    assert f"| compos_num=2, lr=0.001 | 3 | 58.00 ± {half(t4):.2f} |" in oracle
    single_seed = compact(to_markdown(paper_table(sweep_a.trials, "val")))  # one seed: no interval
    assert (
        "| compos_num=2, lr=0.001 | 1 | 31.00 | 41.00 | 51.00 | 61.00 | 62.00 | 32.00 | 15.50 |"
        in single_seed
    )
    stacked = stack_tables({"a": paper_table(sweep_a.trials, k=1), "b": paper_table(repeat.trials, k=1)})
    assert stacked["configuration"].tolist() == ["a: compos_num=2, lr=0.001", "b: compos_num=2, lr=0.001"]
    with pytest.raises(ValueError, match="selection"):
        paper_table(repeat.trials, "test")


# ------------------------------------------------------------------------------------- config id / params
def test_config_id_is_the_same_in_every_form_and_ignores_seed():
    cfg = config("t1")
    flat = cfg.flat()
    logger_form = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in flat.items()}
    ids = {config_id(flat), config_id(tracker_params(cfg)), config_id(logger_form), config_id(cfg.to_dict())}
    assert len(ids) == 1 and len(next(iter(ids))) == 12
    assert config_id({**flat, "seed": 7, "data.root": "/elsewhere"}) in ids
    assert config_id({**flat, "optim.lr": 2e-4}) not in ids
    assert config_id({**flat, "data_info.n_train": "5"}) in ids  # non-config params are ignored


def test_parse_value_by_annotation():
    assert parse_value("None", int | None) is None
    assert parse_value("[1, 2]", tuple[int, ...]) == [1, 2] == parse_value("1,2", tuple[int, ...])
    assert parse_value("True", bool) is True and parse_value("1e-05", float) == 1e-5
    with pytest.raises(ValueError):
        parse_value("abc", int)


# ---------------------------------------------------------------------------------------------- importance
def test_importance_finds_the_parameter_that_matters():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    trials = pd.DataFrame(
        {
            "optim.lr": x,
            "diva.alpha_ssl": y,
            "model.method": "dcml",
            "objective": np.sin(3 * x) + 0.01 * y,
            "status": "FINISHED",
        }
    )
    result = param_importances(trials)
    assert set(result.values) == {"optim.lr", "diva.alpha_ssl"}  # the constant method is left out
    assert result.values["optim.lr"] > 0.8 and sum(result.values.values()) == pytest.approx(1.0)
    assert result.evaluator == "PedAnovaImportanceEvaluator" and result.n_trials == 40


def test_importance_on_the_sweep_and_degenerate_cases(sweep_a, uri):
    result = param_importances(sweep_a.trials)
    # t3 failed and t2 was stopped early: only trials that ran all their epochs count, as Optuna counts COMPLETE
    assert set(result.values) == {"model.compos_num", "optim.lr"} and result.n_trials == 2
    assert result.source == "MLflow (no study)"
    only = param_importances(sweep_a.trials, params=["model.compos_num", "model.arch"])
    assert only.values == {"model.compos_num": pytest.approx(1.0)}
    constant = param_importances(sweep_a.trials, params=["model.arch"])
    assert constant.values == {} and "no parameter varies" in constant.note
    single = param_importances(load_sweep("single", uri).trials)
    assert single.values == {} and "at least 2" in single.note


def test_infer_distribution():
    ints = infer_distribution(pd.Series([2, 8, 4]))
    assert (type(ints).__name__, ints.low, ints.high, ints.log) == ("IntDistribution", 2, 8, False)
    lrs = infer_distribution(pd.Series([1e-4, 1e-2]))
    assert (type(lrs).__name__, lrs.log) == ("FloatDistribution", True)
    cats = infer_distribution(pd.Series(["b", "a", "b"]))
    assert cats.choices == ("a", "b")


# ---------------------------------------------------------------------------------------------- report
REPORT_FILES = [
    "report.md",
    "report.html",
    "learning_curves.png",
    "params_vs_objective.png",
    "importance.png",
    "val_vs_test.png",
    "quality_vs_cost.png",
    "compare_curves.png",
    "table_val.tex",
    "table_oracle.tex",
    "trials_joined.csv",
]


def test_report_command_writes_every_file(uri, tmp_path, capsys):
    out = tmp_path / "report"
    code = report_main(
        ["--experiment", "sweep_a_repeat", "--tracking-uri", uri, "--out", str(out), "--compare", "sweep_a"]
    )
    assert code == 0, capsys.readouterr().err
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = compact((out / "report.md").read_text())
    half = stats.t.ppf(0.975, 2) * stats.sem([0.55, 0.58, 0.52]) * 100
    assert "Seed repeats of sweep `sweep_a`" in md and "## Mean ± CI per configuration over seeds" in md
    assert f"| compos_num=2, lr=0.001 | 3 | 55.00 ± {half:.2f} |" in md
    assert "best-test-epoch convention (test evaluated at every epoch)" in md
    assert f"| compos_num=2, lr=0.001 | 3 | 58.00 ± {half:.2f} |" in md
    assert "## Trials in Ray, Optuna and MLflow" in md and (out / "trials_joined.csv").is_file()
    assert "Source: MLflow (no study)" in md  # a store without an Optuna study: importances from MLflow
    assert "| sweep_a: compos_num=2, lr=0.001 | 1 | 31.00 |" in md  # the comparison
    for image in [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]:
        assert (out / image).is_file()
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html
    assert '<img src="learning_curves.png" alt="' in html and f"<td>55.00 ± {half:.2f}</td>" in html
    assert "\\begin{tabular}" in (out / "table_val.tex").read_text()


def test_report_command_errors(uri, tmp_path, capsys):
    out = str(tmp_path / "r")
    assert report_main(["--experiment", "nope", "--tracking-uri", uri, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "'nope' does not exist" in err and "sweep_a_repeat" in err and "Traceback" not in err
    assert report_main(["--experiment", "empty_sweep", "--tracking-uri", uri, "--out", out]) == 2
    assert "no trial runs" in capsys.readouterr().err
    assert report_main(["--experiment", "x", "--tracking-uri", str(tmp_path / "none.db"), "--out", out]) == 2
    assert "no MLflow database" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written on bad input


def test_markdown_to_html_through_markdown_it():
    text = (
        "# T\n\npara *x* `c` **b** <script>\n\n| a | b |\n|---|---|\n| 1 \\| 2 | <3 |\n\n"
        "![cap](f.png)\n\n- i\n\n```\nx<y\n```\n"
    )
    html = markdown_to_html(text, title="t & u")
    assert html.startswith("<!DOCTYPE html>") and "<title>t &amp; u</title>" in html
    assert "<h1>T</h1>" in html and "<em>x</em>" in html and "<code>c</code>" in html
    assert (
        "<strong>b</strong>" in html and "&lt;script&gt;" in html and "<script>" not in html
    )  # raw HTML escaped
    assert "<th>a</th>" in html and "<td>1 | 2</td>" in html and "<td>&lt;3</td>" in html  # escaped pipe
    assert '<img src="f.png" alt="cap" />' in html and "<li>i</li>" in html
    assert "<pre><code>x&lt;y\n</code></pre>" in html


def test_markdown_and_latex_tables_escape_their_cells():
    frame = pd.DataFrame({"a|b": ["x|y", "1_000"], "n": ["3", "–"]})
    md = markdown_table(frame)
    lines = compact(md).splitlines()
    assert [lines[0], *lines[2:]] == ["| a\\|b | n |", "| x\\|y | 3 |", "| 1_000 | – |"]
    html = markdown_to_html(md)
    assert "<th>a|b</th>" in html and "<td>x|y</td>" in html
    tex = latex_table(frame.assign(n=["55.00 ± 1.20", "–"]), caption="50% & more", label="tab:x")
    assert "\\caption{50\\% \\& more}" in tex and "\\label{tab:x}" in tex and "\\begin{tabular}{lc}" in tex
    assert "1\\_000 & -- \\\\" in tex and "55.00 $\\pm$ 1.20" in tex and "\\bottomrule" in tex
