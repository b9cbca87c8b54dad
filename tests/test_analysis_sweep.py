"""The analysis of a real small sweep (tests/analysis_sweep.py) against Ray's and Optuna's own records.

Ray: every trial folder's ``result.json`` (one line per reported epoch) and the experiment state read by
``ray.tune.ExperimentAnalysis`` (the records ``Tuner.fit`` returns its ResultGrid from). Optuna: the study the
searcher stored in ``sweep_state/optuna.db``. MLflow: the runs, their tags and the checkpoint artifacts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

import analysis
from analysis.checkpoints import best_checkpoint_trials, checkpoint_uris, local_checkpoint
from analysis.importance import study_importances
from analysis.joined import RAY_TRIAL_ATTR, _attach_ray_ids, study_trials
from analysis.report import ReportOptions, build_report
from dcml_core.metric_names import EPOCH, OBJECTIVE
from tests.analysis_sweep import EPOCHS, TRIALS, small_sweep
from tests.test_tune_support import tiny_demo  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_demo):  # noqa: F811
    return small_sweep(tmp_path_factory, tiny_demo)


@pytest.fixture(scope="module")
def data(sweep):
    return analysis.load_sweep(sweep.name, sweep.tracking_uri)


@pytest.fixture(scope="module")
def study(sweep):
    return optuna.load_study(study_name=sweep.name, storage=f"sqlite:///{sweep.optuna_db}")


@pytest.fixture(scope="module")
def joined(data):
    return analysis.joined_table(data, analysis.load_study(data))


def ray_records(sweep_dir: Path) -> dict[str, dict]:
    """Ray's own view of every trial: status and last result (the driver's experiment state), and its reported
    epochs (``result.json``; the storage copy of a trial that crashed may lag: then its last result alone)."""
    from ray.tune import ExperimentAnalysis

    state = ExperimentAnalysis(str(sweep_dir))
    out = {}
    for trial in state.trials:
        lines = (sweep_dir / f"trial_{trial.trial_id}" / "result.json").read_text().splitlines()
        results = [*(json.loads(line) for line in lines if line.strip()), trial.last_result]
        out[trial.trial_id] = {
            "status": trial.status,
            "epochs": max(r[EPOCH] for r in results),
            "best_val": max(r[OBJECTIVE] for r in results if r[EPOCH] >= 1),  # epoch 0: the start, never selected
            "running_best": trial.last_result[f"best/{OBJECTIVE}"],  # the trainable's own bookkeeping
            "config": trial.config,
        }
    return out


def test_joined_table_agrees_with_ray_optuna_and_mlflow(sweep, data, study, joined) -> None:
    ray = ray_records(sweep.sweep_dir)
    assert len(ray) == TRIALS and len(joined) == TRIALS
    assert sorted(joined["ray_trial_id"]) == sorted(ray)
    by_number = {t.number: t for t in study.trials}
    runs = data.runs.set_index("run_id")
    for _, row in joined.iterrows():
        rec = ray[row.ray_trial_id]
        # Optuna: the trial that names this Ray trial, its state as Ray's outcome implies
        trial = by_number[row.optuna_trial]
        assert trial.user_attrs[RAY_TRIAL_ATTR] == row.ray_trial_id
        assert row.optuna_state == trial.state.name
        expected = "FAIL" if rec["status"] == "ERROR" else "COMPLETE" if rec["epochs"] == EPOCHS else "PRUNED"
        assert row.optuna_state == expected, (row, rec)
        for key, value in trial.params.items():  # the sampled configuration is Optuna's (and Ray's config)
            assert row[key.replace("/", ".")] == pytest.approx(value)
            section, name = key.split("/")
            assert rec["config"][section][name] == pytest.approx(value)
        # MLflow: the run tagged with this Ray trial; its epochs and best validation value are Ray's
        assert runs.at[row.mlflow_run_id, "tags.ray.trial_id"] == row.ray_trial_id
        assert row.mlflow_status == ("FAILED" if rec["status"] == "ERROR" else "FINISHED")
        assert row.epochs_run == rec["epochs"]
        assert row["best_val/recall_at_1"] == pytest.approx(rec["best_val"]) == rec["running_best"]
        assert bool(row.stopped_early) == (row.optuna_state == "PRUNED")
    states = set(joined["optuna_state"])
    assert "FAIL" in states and "COMPLETE" in states, joined[["ray_trial_id", "optuna_state", "epochs_run"]]


def test_joined_table_columns_and_checkpoints(data, joined) -> None:
    sampled = data.parent["params"]["sampled_params"].split(",")
    assert list(joined.columns[:6]) == analysis.joined.IDENTITY
    assert set(sampled) <= set(joined.columns) and "sel_test/recall_at_1" in joined.columns
    assert joined["optuna_trial"].tolist() == sorted(joined["optuna_trial"])
    with_ckpt = joined[joined["checkpoint"].notna()]
    assert set(with_ckpt["mlflow_run_id"]) == set(checkpoint_uris(data)) and 1 <= len(with_ckpt) <= 3
    for _, row in with_ckpt.iterrows():
        state = json.loads(
            (Path(row.checkpoint) / "tune_state.json").read_text()
        )  # the trainable's BestSoFar
        assert state["epoch"] == row.best_epoch and state["value"] == pytest.approx(
            row["best_val/recall_at_1"]
        )
        assert (Path(row.checkpoint) / "state.pt").is_file()


def test_joins_older_studies_on_the_sampled_values(data, study, joined) -> None:
    """A study without the ray_trial_id attribute (sweeps before it) is joined on the sampled values."""
    frame = study_trials(study)
    runs = joined[["ray_trial_id", *analysis.joined.sampled_params(data)]]
    recovered = _attach_ray_ids(frame.assign(ray_trial_id=None), runs, analysis.joined.sampled_params(data))
    assert recovered["ray_trial_id"].tolist() == frame["ray_trial_id"].tolist()


def test_importances_come_from_the_stored_study(study) -> None:
    result = study_importances(study)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert result.source == "stored Optuna study" and result.n_trials == len(complete)
    if len(complete) >= 2:
        expected = optuna.importance.get_param_importances(study)
        assert result.values == {k.replace("/", "."): pytest.approx(v) for k, v in expected.items()}
    else:
        assert result.values == {} and "at least 2 COMPLETE" in result.note


def test_best_checkpoints_load_and_views_are_drawn(sweep, data) -> None:
    best = best_checkpoint_trials(data, k=1)
    assert len(best) == 1 and best["objective"].iloc[0] == data.trials["objective"].max()
    trials = analysis.analyse_best_trials(data, k=1, n_trials=5)
    views = trials[0]
    assert views.checkpoint == local_checkpoint(best["checkpoint"].iloc[0], sweep.tracking_uri)
    table = views.table.set_index("name")
    assert set(table.index) >= {"discriminative", "shared"}
    assert views.tuned is not None and views.tuned.heads == ("discriminative", "shared")
    # The configured evaltype re-evaluated from the checkpoint gives the validation Recall@1 the sweep logged
    configured = views.table[views.table["kind"] == "configured"].iloc[0]
    assert configured["val R@1"] == pytest.approx(views.objective)
    n_test = len(views.test)
    assert views.retrieval_grid(n_queries=3, k=4).axes and views.embedding_map().axes
    assert n_test == len(views.test.paths)


def test_report_on_the_sweep_writes_every_view(sweep, data, tmp_path) -> None:
    out = tmp_path / "report"
    options = ReportOptions(views_top_k=2, weight_trials=5)
    files = build_report(sweep.name, out, sweep.tracking_uri, options=options)
    names = {p.name for p in files}
    assert {"retrieval_grid.png", "embedding_map.png", "trials_joined.csv", "per_head.csv"} <= names
    assert "evaltype_weights.csv" in names
    csv = pd.read_csv(out / "trials_joined.csv")
    expected = analysis.joined_table(data, analysis.load_study(data))
    assert csv["ray_trial_id"].tolist() == expected["ray_trial_id"].tolist()
    assert csv["optuna_state"].tolist() == expected["optuna_state"].tolist()
    np.testing.assert_allclose(csv["best_val/recall_at_1"], expected["best_val/recall_at_1"].astype(float))
    md = (out / "report.md").read_text()
    for section in (
        "## Trials in Ray, Optuna and MLflow",
        "### Recall@1 per head and evaltype",
        "### Evaltype weights tuned on validation data",
        "![Retrieval grid of",
        "![Embedding map of",
        "Source: stored Optuna study",
    ):
        assert section in md, section
    weights = pd.read_csv(out / "evaltype_weights.csv")
    assert (weights["kind"] == "tuned on val").sum() == weights["trial"].nunique() >= 1
    assert not math.isnan(weights["test R@1"].iloc[0])


def test_the_sweep_console_shows_its_own_lines_not_rays_or_mlflows(sweep) -> None:
    log = (sweep.root / "sweep.log").read_text()
    assert f"Sweep '{sweep.name}' (new)" in log and "Best trials (of" in log and "Overhead" in log
    # Ray's configuration box and TensorBoard command (a /tmp/ray staging folder), MLflow's table creation
    for noise in ("Configuration for experiment", "tensorboard --logdir", "Creating initial MLflow database tables"):
        assert noise not in log, noise


def test_the_best_checkpoints_reach_mlflow_before_the_last_trial_ends(sweep, data) -> None:
    client = MlflowClient(sweep.tracking_uri)
    runs = [client.get_run(run_id) for run_id in data.trials["run_id"]]
    scored = [r for r in runs if not math.isnan(r.data.metrics.get(f"best/{OBJECTIVE}", math.nan))]
    assert len(scored) >= 3
    uploaded = {run_id: client.list_artifacts(run_id, "checkpoint") for run_id in checkpoint_uris(data)}
    assert len(uploaded) == 3 and all(uploaded.values())
    # the three best by validation objective (none of the smoke trials ties)
    best3 = sorted(scored, key=lambda r: -r.data.metrics[f"best/{OBJECTIVE}"])[:3]
    assert set(uploaded) == {r.info.run_id for r in best3}
    # with 4 trials, 2 at a time and 3 kept, the best of the first 3 to end is uploaded while the 4th runs
    copied = min(
        (Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / "checkpoint").stat().st_mtime
        for run_id in uploaded
    )
    assert copied * 1000 < max(r.info.end_time for r in runs)


def test_trial_folders_hold_tunes_json_and_csv_records_and_no_tensorboard_files(sweep) -> None:
    """Tune's result.json / params.json and progress.csv are written for every trial (``--sync-mlflow`` and the
    benchmarks read them); its TensorBoard event files are not (nothing reads them)."""
    trials = sorted(sweep.sweep_dir.glob("trial_*"))
    assert len(trials) == TRIALS
    for folder in trials:
        assert {"result.json", "params.json", "progress.csv"} <= {p.name for p in folder.iterdir()}, folder
        epochs = [json.loads(line)[EPOCH] for line in (folder / "result.json").read_text().splitlines() if line]
        assert epochs and epochs == sorted(epochs) and epochs[0] == 0  # the starting network first
        assert not list(folder.glob("events.out.tfevents*")), folder
