"""The MLflow side of a sweep, without Ray: nesting, resume without duplicates, closing runs, runs found again by
their tags, and what the MLflow UI shows (experiment kind, run names, sampled parameters, system tags)."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

import search_spaces
from dcml_core.config import ExperimentConfig
from dcml_core.tracking import EXPERIMENT_KIND, TrackingError, config_id, git_state, param_text
from tune import mlflow_callback
from tune.mlflow_callback import MLflowSweepCallback, writer_for
from tune.trial_run import TrialLog, metrics_of, short, trial_run

SAMPLED = tuple(search_spaces.get("smoke").distributions())


@dataclass
class FakeTrial:
    """The attributes of ``ray.tune.experiment.Trial`` the callbacks read."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def get_error(self) -> str | None:
        return self.error


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
def sweep(store, request):
    """A writer with an opened parent run in an experiment named after the test."""
    mlflow_callback._WRITERS.clear()
    uri, name = f"sqlite:///{store}", request.node.name[:60]
    writer = writer_for(uri, name, SAMPLED)
    writer.open({"space": "smoke", "seed": 0}, {"dcml.command": "python tune/run.py --space smoke"})
    config = search_spaces.get("smoke").sample(1, seed=0)[0]
    yield {"uri": uri, "writer": writer, "config": config, "client": MlflowClient(uri), "name": name}
    mlflow_callback._WRITERS.clear()


def _callback(sweep: dict, max_epochs: int) -> MLflowSweepCallback:
    return MLflowSweepCallback(sweep["uri"], sweep["name"], max_epochs, SAMPLED)


def _runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return list(client.search_runs([exp.experiment_id]))


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_child_runs_nest_under_the_parent_with_params_tags_and_epoch_steps(sweep) -> None:
    cb = _callback(sweep, max_epochs=3)
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
    assert child.data.tags["ray.trial_id"] == "t1"
    assert child.data.tags["dcml.stopped_early"] == "true"  # 2 of 3 epochs
    assert child.info.status == "FINISHED"
    assert child.data.params["model.compos_num"] in ("2", "4")
    assert child.data.params["data.dataset"] == "demo"
    assert _steps(client, child.info.run_id, "val/recall_at_1") == [1, 2]
    assert child.data.metrics["final/val/recall_at_1"] == pytest.approx(0.2)
    assert "training_iteration" not in child.data.metrics and "val/nan_metric" not in child.data.metrics
    assert parent.data.params["space"] == "smoke" and parent.info.status == "RUNNING"


def test_resumed_sweep_continues_the_same_runs_without_duplicate_steps(sweep) -> None:
    cb = _callback(sweep, max_epochs=4)
    trial = FakeTrial("t1", sweep["config"])
    cb.on_trial_start(0, [trial], trial)
    for epoch in (1, 2, 3):
        cb.on_trial_result(0, [trial], trial, _result(epoch, 0.1 * epoch))
    parent_id = sweep["writer"].parent_run_id

    # the driver dies; a new process restores Tune's pickled callback and opens the sweep again
    mlflow_callback._WRITERS.clear()
    restored = pickle.loads(pickle.dumps(cb))
    writer = writer_for(sweep["uri"], sweep["name"], SAMPLED)
    assert not writer.open({"space": "smoke", "seed": 0}, {"dcml.command": "resume"}, resume=True)
    assert writer.parent_run_id == parent_id and writer.session == 1
    trial = FakeTrial("t1", sweep["config"])  # restored from checkpoint 2: epochs 3 and 4 arrive
    restored.on_trial_start(0, [trial], trial)
    for epoch in (3, 4):
        trial.last_result = _result(epoch, 0.1 * epoch + (0.5 if epoch == 3 else 0))  # epoch 3 differs
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
    epoch3 = [m.value for m in client.get_metric_history(run_id, "val/recall_at_1") if m.step == 3]
    assert epoch3 == [pytest.approx(0.3)]  # the first report of an epoch stays
    assert _steps(client, run_id, "final/val/recall_at_1") == [4]
    assert children[0].data.tags["dcml.stopped_early"] == "false"
    parent = client.get_run(parent_id)
    assert [k for k in parent.data.tags if k.startswith("dcml.resumed_at.")] != []


def test_runs_are_found_again_by_their_tags_in_a_new_process(sweep) -> None:
    log = TrialLog("t9", sweep["config"])
    log.add(_result(1, 0.5))
    sweep["writer"].write(log)
    run_id, parent_id = sweep["writer"].runs["t9"].run_id, sweep["writer"].parent_run_id
    mlflow_callback._WRITERS.clear()
    again = writer_for(sweep["uri"], sweep["name"], SAMPLED)
    with pytest.raises(TrackingError, match="continue it with --resume"):
        again.open({}, {})  # a new sweep may not take over an existing one
    assert not again.open({}, {}, resume=True) and again.parent_run_id == parent_id
    assert again.runs["t9"].run_id == run_id and again.runs["t9"].last_step == 1  # all of it from MLflow
    log = TrialLog("t9", sweep["config"])
    for epoch in (1, 2):
        log.add(_result(epoch, 0.5))
    again.write(log)
    assert again.counts["created"] == 0 and again.counts["present"] == len(metrics_of(_result(1, 0.5)))
    assert _steps(sweep["client"], run_id, "epoch") == [1, 2]


def test_a_run_created_without_its_parameters_gets_them_when_found(sweep) -> None:
    writer, client = sweep["writer"], sweep["client"]
    name, params, tags = trial_run(sweep["config"], "cut", sweep["name"], SAMPLED)
    bare = client.create_run(writer.experiment_id, run_name=name, tags=tags).info.run_id  # its params were lost
    writer.runs.clear()
    writer.write(TrialLog("cut", sweep["config"]))
    assert client.get_run(bare).data.params == {k: param_text(v) for k, v in params.items()}
    assert writer.counts["created"] == 0


def test_failed_trial_gets_failed_status_and_the_error_line(sweep) -> None:
    cb = _callback(sweep, max_epochs=3)
    trial = FakeTrial(
        "t2", sweep["config"], error="Traceback ...\n  File x\nNonFiniteLossError: training loss is nan\n"
    )
    cb.on_trial_start(0, [trial], trial)
    cb.on_trial_result(0, [trial], trial, _result(1, 0.1))
    trial.status = "ERROR"
    cb.on_trial_error(0, [trial], trial)
    run = sweep["client"].get_run(sweep["writer"].find("t2").run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["dcml.error"] == "NonFiniteLossError: training loss is nan"


def test_experiment_end_closes_runs_of_trials_that_ended_unseen_and_interrupted_runs_are_killed(
    sweep,
) -> None:
    cb = _callback(sweep, max_epochs=2)
    done, running = FakeTrial("t3", sweep["config"]), FakeTrial("t4", sweep["config"])
    for trial in (done, running):
        cb.on_trial_start(0, [done, running], trial)
        trial.last_result = _result(2 if trial is done else 1, 0.3)
        cb.on_trial_result(0, [done, running], trial, trial.last_result)
    done.status = "TERMINATED"  # its on_trial_complete was never delivered (driver crash)
    done.last_result["done"] = True
    running.status = "TERMINATED"  # Ctrl-C: Tune marks the trials it stops TERMINATED, without a final result
    cb.on_experiment_end([done, running])
    client, writer = sweep["client"], sweep["writer"]
    run_of = {t: writer.find(t).run_id for t in ("t3", "t4")}
    assert client.get_run(run_of["t3"]).info.status == "FINISHED"
    assert client.get_run(run_of["t4"]).info.status == "RUNNING"
    assert writer.finish({"sweep/trials_completed": 1, "sweep/nan": math.nan}) == [run_of["t4"]]
    assert client.get_run(run_of["t4"]).info.status == "KILLED"  # the interrupted one
    parent = client.get_run(writer.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"sweep/trials_completed": 1.0}
    # a trial that reports again after a resume is set RUNNING again, and its real end replaces KILLED
    cb2 = _callback(sweep, max_epochs=2)
    running.last_result = _result(2, 0.4)
    cb2.on_trial_result(0, [running], running, running.last_result)
    assert client.get_run(run_of["t4"]).info.status == "RUNNING"
    cb2.on_trial_complete(0, [running], running)
    assert client.get_run(run_of["t4"]).info.status == "FINISHED"


def test_metrics_of_keeps_only_finite_training_and_evaluation_values() -> None:
    out = metrics_of(_result(2, 0.5))
    assert out == {"epoch": 2.0, "val/recall_at_1": 0.5, "train/loss": 0.5, "best/val/recall_at_1": 0.5}


def test_best_checkpoints_are_uploaded_to_ended_runs_next_to_a_sqlite_database(sweep, store, tmp_path) -> None:
    log = TrialLog("t5", sweep["config"])
    log.add(_result(1, 0.5))
    log.finish("completed", _result(1, 0.5))
    sweep["writer"].write(log)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"x" * 10)
    upload = TrialLog("t5", sweep["config"])  # what the driver does at the end for the best trials
    upload.checkpoint = str(ckpt)
    sweep["writer"].write(upload)
    run = sweep["client"].get_run(sweep["writer"].find("t5").run_id)
    assert [a.path for a in sweep["client"].list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/state.pt"]
    assert (store.parent / "mlartifacts" / sweep["name"]).is_dir()
    assert run.info.status == "FINISHED"  # an upload does not reopen the run


def test_the_mlflow_ui_opens_on_runs_named_by_their_sampled_values(sweep) -> None:
    """Experiment kind (MLflow 3's classic runs view), run names and description with the sampled values, the
    sampled names, MLflow's own system tags, the seed-free config id."""
    writer, client = sweep["writer"], sweep["client"]
    writer.write(TrialLog("c3fbaa19", sweep["config"]))
    exp = client.get_experiment_by_name(sweep["name"])
    assert exp.tags["mlflow.experimentKind"] == EXPERIMENT_KIND["mlflow.experimentKind"] == "custom_model_development"
    # the view ui_command's address opens (viewStateShareKey): the trials, best first, sampled values as columns
    view = json.loads(exp.tags["mlflow.sharedViewState.dcml-trials"])
    assert view["searchFilter"] == "tags.`dcml.role` = 'trial'" and view["orderByKey"] == "metrics.`best/val/recall_at_1`"
    assert view["orderByAsc"] is False and view["runsHiddenMode"] == "SHOW_ALL"
    assert view["selectedColumns"][0] == view["orderByKey"] and "metrics.`start/test/recall_at_1`" in view["selectedColumns"]
    assert [c for c in view["selectedColumns"] if c.startswith("params.")] == [f"params.`{n}`" for n in SAMPLED]
    run = client.get_run(writer.find("c3fbaa19").run_id)
    config = sweep["config"]
    m, k, lr = config["model"]["compos_num"], config["model"]["ensemble_num"], config["optim"]["lr"]
    assert run.info.run_name.startswith(f"M{m} K{k} lr{short(lr)} ") and run.info.run_name.endswith(" (c3fbaa19)")
    assert run.data.tags["dcml.sampled"].split(",") == list(SAMPLED)
    note = run.data.tags["mlflow.note.content"]
    assert all(f"`{name}`" in note for name in SAMPLED) and repr(lr) in note
    commit, dirty = git_state()
    assert run.data.tags["mlflow.source.git.commit"] == commit and run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.name"]
    assert run.data.tags["mlflow.source.git.dirty"] == str(dirty).lower()
    assert run.data.tags["dcml.config_id"] == config_id(ExperimentConfig.from_dict(config).flat())


def test_short_values_in_run_names() -> None:
    assert [short(v) for v in (1.12e-4, 0.4567, 1500.0, 0.011, 55, [40, 55], 0.0)] == [
        "1.1e-4", "0.46", "1.5e3", "0.011", "55", "40/55", "0",
    ]  # fmt: skip



def _final_top(order: list[tuple[str, float]], k: int) -> list[str]:
    """The summary's top k (``tune.summary.ranked``): best first, ties in trial order, trials without a score out."""
    return [t for t, _ in sorted((x for x in order if not math.isnan(x[1])), key=lambda x: -x[1])][:k]


def test_checkpoints_uploaded_early_are_those_no_remaining_trial_can_push_out() -> None:
    import random

    from tune.mlflow_callback import certain_top

    rng = random.Random(0)
    values = [0.1, 0.2, 0.3, 0.5, math.nan]  # few values: many ties
    for _ in range(400):
        k, remaining = rng.randint(1, 4), rng.randint(0, 4)
        ended = [(f"e{i}", rng.choice(values)) for i in range(rng.randint(0, 6))]
        certain = certain_top(ended, remaining, k)
        futures = [[(f"r{i}", rng.choice([*values, 0.9, 0.0])) for i in range(remaining)] for _ in range(30)]
        futures.append([(f"r{i}", 1.0) for i in range(remaining)])  # every remaining trial beats every ended one
        for future in futures:
            for order in (ended + future, future + ended):  # remaining trials may be older (running) or newer
                assert set(certain) <= set(_final_top(order, k)), (ended, remaining, k, future)
        # and no ended trial is left out that no future could push out: all-best remaining trials push the rest
        pushed = _final_top([(f"r{i}", 1.0) for i in range(remaining)] + ended, k)
        assert set(certain) == {t for t, _ in ended} & set(pushed)


class FakeCheckpoint:
    def __init__(self, path: Path) -> None:
        self.path = path

    def as_directory(self):
        import contextlib

        return contextlib.nullcontext(str(self.path))


def test_best_checkpoints_go_to_mlflow_while_the_last_trials_still_run(sweep, tmp_path) -> None:
    cb = MLflowSweepCallback(sweep["uri"], sweep["name"], 2, SAMPLED, top_k=2, total=4)
    trials = [FakeTrial(f"t{i}", sweep["config"]) for i in range(4)]
    finals = {"t0": 0.30, "t1": 0.50, "t2": 0.40, "t3": 0.45}

    def run(trial: FakeTrial) -> None:
        cb.on_trial_start(0, trials, trial)
        for epoch, value in ((1, finals[trial.trial_id] - 0.1), (2, finals[trial.trial_id])):
            trial.last_result = {**_result(epoch, value), "best/val/recall_at_1": value}
            cb.on_trial_result(0, trials, trial, trial.last_result)
            folder = tmp_path / trial.trial_id / f"epoch{epoch}"
            folder.mkdir(parents=True)
            (folder / "state.pt").write_text(f"{trial.trial_id} epoch {epoch}")
            cb.on_checkpoint(0, trials, trial, FakeCheckpoint(folder))
        cb.on_trial_complete(0, trials, trial)
        trial.status = "TERMINATED"

    writer = sweep["writer"]
    run(trials[0])
    run(trials[1])
    assert writer.checkpoints_uploaded == set()  # 2 trials to come: either could beat both
    run(trials[2])
    assert writer.checkpoints_uploaded == {"t1"}  # best so far; 1 trial left can push it to 2nd at worst
    run(trials[3])
    assert writer.checkpoints_uploaded == {"t1", "t3"}  # the top 2; t2 and t0 never

    client = sweep["client"]
    for run_info in _runs(client, sweep["name"]):
        trial_id = run_info.data.tags.get("ray.trial_id")
        files = [f.path for f in client.list_artifacts(run_info.info.run_id, "checkpoint")]
        if trial_id in ("t1", "t3"):  # the checkpoint of the best epoch
            assert files == ["checkpoint/state.pt"]
            local = client.download_artifacts(run_info.info.run_id, "checkpoint/state.pt", str(tmp_path / "dl"))
            assert Path(local).read_text() == f"{trial_id} epoch 2"
        elif trial_id:
            assert files == []
