"""The MLflow side of a sweep, without Ray: nesting, resume without duplicates, closing runs, lost state."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

import search_spaces
from dcml_core.tracking import TrackingError
from tune import mlflow_callback
from tune.mlflow_callback import MLflowSweepCallback, tracker_for
from tune.sweep_tracker import STATE_FILE, metrics_of


@dataclass
class FakeTrial:
    """The attributes of ``ray.tune.experiment.Trial`` the callback reads."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def get_error(self) -> str | None:
        return self.error

    def __str__(self) -> str:
        return f"dcml_trial_{self.trial_id}"


def _result(epoch: int, value: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "val/recall_at_1": value,
        "train/loss": 1.0 / epoch,
        "best/val/recall_at_1": value,
        "training_iteration": epoch,
        "time_total_s": 3.0 * epoch,
        "trial_id": "x",
        "done": False,
        "config": {"a": 1},
        "hostname": "h",
        "val/nan_metric": math.nan,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store for the module (creating its schema takes seconds); each test has its own sweep."""
    return tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"


@pytest.fixture()
def sweep(tmp_path, store, request):
    """A tracker with a started parent run in an experiment named after the test."""
    mlflow_callback._TRACKERS.clear()
    uri = f"sqlite:///{store}"
    state = tmp_path / "sweep"
    name = request.node.name[:60]
    tracker = tracker_for(uri, state, name)
    tracker.start_sweep({"space": "smoke", "seed": 0}, {"dcml.command": "python tune/run.py --space smoke"})
    config = search_spaces.get("smoke").sample(1, seed=0)[0]
    yield {
        "uri": uri,
        "state": state,
        "tracker": tracker,
        "config": config,
        "client": MlflowClient(uri),
        "name": name,
    }
    mlflow_callback._TRACKERS.clear()


def _runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return list(client.search_runs([exp.experiment_id]))


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_child_runs_nest_under_the_parent_with_params_tags_and_epoch_steps(sweep) -> None:
    cb = MLflowSweepCallback(sweep["uri"], sweep["state"], sweep["name"], max_epochs=3)
    trial = FakeTrial("t1", sweep["config"])
    cb.on_trial_start(0, [trial], trial)
    for epoch in (1, 2):
        trial.last_result = _result(epoch, 0.1 * epoch)
        cb.on_trial_result(0, [trial], trial, trial.last_result)
    trial.status = "TERMINATED"
    cb.on_trial_complete(0, [trial], trial)

    client = sweep["client"]
    runs = {r.data.tags["dcml.role"]: r for r in _runs(client, sweep["name"])}
    child, parent = runs["trial"], runs["parent"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["ray.trial_id"] == "t1" and child.info.run_name == "dcml_trial_t1"
    assert child.data.tags["dcml.stopped_early"] == "true"  # 2 of 3 epochs
    assert child.info.status == "FINISHED"
    assert child.data.params["model.compos_num"] in ("2", "4")
    assert child.data.params["data.dataset"] == "demo"
    assert _steps(client, child.info.run_id, "val/recall_at_1") == [1, 2]
    assert child.data.metrics["final/val/recall_at_1"] == pytest.approx(0.2)
    assert "training_iteration" not in child.data.metrics and "val/nan_metric" not in child.data.metrics
    assert parent.data.params["space"] == "smoke" and parent.info.status == "RUNNING"


def test_resumed_sweep_continues_the_same_runs_without_duplicate_steps(sweep) -> None:
    cb = MLflowSweepCallback(sweep["uri"], sweep["state"], sweep["name"], max_epochs=4)
    trial = FakeTrial("t1", sweep["config"])
    cb.on_trial_start(0, [trial], trial)
    for epoch in (1, 2, 3):
        cb.on_trial_result(0, [trial], trial, _result(epoch, 0.1 * epoch))
    parent_id = sweep["tracker"].parent_run_id

    # the driver dies; a new process restores Tune's pickled callback and opens the sweep again
    mlflow_callback._TRACKERS.clear()
    restored = pickle.loads(pickle.dumps(cb))
    tracker = tracker_for(sweep["uri"], sweep["state"], sweep["name"])
    assert (
        tracker.start_sweep({"space": "smoke", "seed": 0}, {"dcml.command": "resume"}, resume=True)
        == parent_id
    )
    trial = FakeTrial("t1", sweep["config"])  # restored from checkpoint 2: epochs 3 and 4 arrive
    restored.on_trial_start(0, [trial], trial)
    for epoch in (3, 4):
        trial.last_result = _result(epoch, 0.1 * epoch)
        restored.on_trial_result(0, [trial], trial, trial.last_result)
    trial.status = "TERMINATED"
    restored.on_trial_complete(0, [trial], trial)
    restored.on_experiment_end([trial])  # must not log the final metrics twice

    client = sweep["client"]
    children = [r for r in _runs(client, sweep["name"]) if r.data.tags["dcml.role"] == "trial"]
    assert len(children) == 1
    run_id = children[0].info.run_id
    for key in ("val/recall_at_1", "train/loss", "epoch"):
        assert _steps(client, run_id, key) == [1, 2, 3, 4], key
    assert _steps(client, run_id, "final/val/recall_at_1") == [4]
    assert children[0].data.tags["dcml.stopped_early"] == "false"


def test_runs_are_found_again_by_their_tags_when_the_state_file_is_lost(sweep) -> None:
    tracker = sweep["tracker"]
    run_id = tracker.start_trial("t9", "dcml_trial_t9", {"a": 1})
    parent_id = tracker.parent_run_id
    (sweep["state"] / STATE_FILE).unlink()
    mlflow_callback._TRACKERS.clear()
    again = tracker_for(sweep["uri"], sweep["state"], sweep["name"])
    with pytest.raises(TrackingError, match="continue it with --resume"):
        again.start_sweep({}, {})  # a new sweep may not take over an existing one
    assert again.start_sweep({}, {}, resume=True) == parent_id
    assert again.run_id("t9") == run_id
    assert again.start_trial("t9", "dcml_trial_t9", {"a": 1}) == run_id  # same params may be logged again


def test_failed_trial_gets_failed_status_and_the_error_line(sweep) -> None:
    cb = MLflowSweepCallback(sweep["uri"], sweep["state"], sweep["name"], max_epochs=3)
    trial = FakeTrial(
        "t2", sweep["config"], error="Traceback ...\n  File x\nNonFiniteLossError: training loss is nan\n"
    )
    cb.on_trial_start(0, [trial], trial)
    cb.on_trial_result(0, [trial], trial, _result(1, 0.1))
    trial.status = "ERROR"
    cb.on_trial_error(0, [trial], trial)
    run = sweep["client"].get_run(sweep["tracker"].run_id("t2"))
    assert run.info.status == "FAILED"
    assert run.data.tags["dcml.error"] == "NonFiniteLossError: training loss is nan"


def test_experiment_end_closes_runs_of_trials_that_ended_unseen_and_interrupted_runs_are_killed(
    sweep,
) -> None:
    cb = MLflowSweepCallback(sweep["uri"], sweep["state"], sweep["name"], max_epochs=2)
    done, running = FakeTrial("t3", sweep["config"]), FakeTrial("t4", sweep["config"])
    for trial in (done, running):
        cb.on_trial_start(0, [done, running], trial)
        trial.last_result = _result(2 if trial is done else 1, 0.3)
        cb.on_trial_result(0, [done, running], trial, trial.last_result)
    done.status = "TERMINATED"  # its on_trial_complete was never delivered (driver crash)
    done.last_result["done"] = True
    running.status = "TERMINATED"  # Ctrl-C: Tune marks the trials it stops TERMINATED, without a final result
    cb.on_experiment_end([done, running])
    client, tracker = sweep["client"], sweep["tracker"]
    assert client.get_run(tracker.run_id("t3")).info.status == "FINISHED"
    assert client.get_run(tracker.run_id("t4")).info.status == "RUNNING"
    assert tracker.close_unfinished("KILLED") == [tracker.run_id("t4")]
    assert client.get_run(tracker.run_id("t4")).info.status == "KILLED"
    assert client.get_run(tracker.parent_run_id).info.status == "RUNNING"  # the parent is ended separately
    tracker.finish_sweep({"sweep/trials_completed": 1, "sweep/nan": math.nan})
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"sweep/trials_completed": 1.0}
    # a trial that reports again after a resume is set RUNNING again
    cb2 = MLflowSweepCallback(sweep["uri"], sweep["state"], sweep["name"], max_epochs=2)
    cb2.on_trial_result(0, [running], running, _result(2, 0.4))
    assert client.get_run(tracker.run_id("t4")).info.status == "RUNNING"


def test_metrics_of_keeps_only_finite_training_and_evaluation_values() -> None:
    out = metrics_of(_result(2, 0.5))
    assert out == {"epoch": 2.0, "val/recall_at_1": 0.5, "train/loss": 0.5, "best/val/recall_at_1": 0.5}


def test_artifacts_of_a_sqlite_store_go_next_to_the_database(sweep, store, tmp_path) -> None:
    tracker = sweep["tracker"]
    tracker.start_trial("t5", "dcml_trial_t5", {})
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"x" * 10)
    tracker.log_checkpoint("t5", ckpt)
    client = sweep["client"]
    assert [a.path for a in client.list_artifacts(tracker.run_id("t5"), "checkpoint")] == [
        "checkpoint/state.pt"
    ]
    assert (store.parent / "mlartifacts" / sweep["name"]).is_dir()
