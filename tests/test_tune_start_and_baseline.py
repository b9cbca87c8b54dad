"""Every trial starts its curves at epoch 0 (the starting network) and every sweep runs the space's baseline as
its first trial, marked in Optuna, MLflow and the summary (on the session's real small sweep, see
tests/analysis_sweep.py), and the starting network's scores are shared by trials that share it."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow import MlflowClient
from pyarrow import fs as pafs

import search_spaces
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.metric_names import OWN_TIME
from dcml_core.tracking import BASELINE_TAG, PARENT_ROLE, ROLE_TAG, TRIAL_TAG
from tests.analysis_sweep import small_sweep
from tests.conftest import tiny_config
from tests.test_tune_support import tiny_demo  # noqa: F401  (fixture)
from tune.start_eval import FOLDER, start_key, start_scores


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_demo):  # noqa: F811
    return small_sweep(tmp_path_factory, tiny_demo)


@pytest.fixture(scope="module")
def runs(sweep):
    client = MlflowClient(sweep.tracking_uri)
    exp = client.get_experiment_by_name(sweep.name)
    return client, {r.data.tags[TRIAL_TAG]: r for r in client.search_runs([exp.experiment_id]) if TRIAL_TAG in r.data.tags}


def test_the_first_trial_is_the_baseline_in_optuna_and_mlflow(sweep, runs) -> None:
    baseline = search_spaces.get("smoke").baseline
    study = optuna.load_study(study_name=sweep.name, storage=f"sqlite:///{sweep.optuna_db}")
    first = min(study.trials, key=lambda t: t.number)
    assert first.user_attrs.get("dcml_baseline") is True
    assert {k.replace("/", "."): v for k, v in first.params.items()} == pytest.approx(baseline)
    assert sum(bool(t.user_attrs.get("dcml_baseline")) for t in study.trials) == 1
    client, by_trial = runs
    marked = [r for r in by_trial.values() if r.data.tags.get(BASELINE_TAG) == "true"]
    assert len(marked) == 1 and marked[0].data.tags[TRIAL_TAG] == first.user_attrs["ray_trial_id"]
    assert marked[0].info.run_name.startswith("baseline M2 K2")
    log = (sweep.root / "sweep.log").read_text()
    assert f"Baseline ({first.user_attrs['ray_trial_id']}, the space's published configuration" in log


def test_every_curve_starts_at_epoch_zero_with_the_starting_network(sweep, runs) -> None:
    client, by_trial = runs
    for run in by_trial.values():
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test/recall_at_1")}
        assert 0 in history, run.info.run_name
        assert client.get_metric_history(run.info.run_id, "val/recall_at_1")[0].step == 0
        start = client.get_metric_history(run.info.run_id, "start/test/recall_at_1")
        assert {m.value for m in start} == {history[0]}  # carried unchanged in every later report
    assert "vs its starting network (epoch 0): test Recall@1" in (sweep.root / "sweep.log").read_text()


def test_trials_with_the_same_starting_network_share_its_scores(sweep) -> None:
    stored = sorted((sweep.sweep_dir / FOLDER).glob("*.json"))
    results = {}
    for trial in sweep.sweep_dir.glob("trial_*"):
        first = json.loads((trial / "result.json").read_text().splitlines()[0])
        assert first["epoch"] == 0
        results[trial.name] = first
    assert 1 <= len(stored) <= len(results)
    scores = {json.loads(p.read_text())["test/recall_at_1"] for p in stored}
    assert {r["test/recall_at_1"] for r in results.values()} == scores


def test_start_scores_are_computed_once_per_starting_network(tiny_demo, tmp_path, monkeypatch) -> None:  # noqa: F811
    cfg = ExperimentConfig.from_dict(tiny_config(str(tiny_demo), model={"arch": "demo_cnn_normalize"}))
    a, b = Engine(cfg, device="cpu"), Engine(cfg.replace(optim={"lr": 0.5}), device="cpu")
    other = Engine(cfg.replace(seed=cfg.seed + 1), device="cpu")
    assert start_key(a) == start_key(b) != start_key(other)  # the learning rate does not change the start
    folder = (pafs.LocalFileSystem(), str(tmp_path / "sweep" / "trial_a"))
    first = start_scores(a, folder)
    calls = []
    monkeypatch.setattr(Engine, "evaluate", lambda self, split: calls.append(split) or {})
    again = start_scores(b, (folder[0], str(tmp_path / "sweep" / "trial_b")))
    assert calls == []  # served from <sweep>/start_eval, not evaluated again
    assert {k: v for k, v in again.items() if "eval_time" not in k} == {
        k: v for k, v in first.items() if "eval_time" not in k
    }
    assert again["val/eval_time_s"] == 0.0
    start_scores(other, (folder[0], str(tmp_path / "sweep" / "trial_c")))
    assert calls == ["val", "test"]  # another seed: another starting network


def test_asha_records_the_baseline_at_its_rungs_but_never_stops_it() -> None:
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from dcml_core.metric_names import EPOCH, OBJECTIVE
    from tune.asha import BaselineKeepingASHA

    baseline = {"optim.lr": 0.1}
    asha = BaselineKeepingASHA(
        time_attr=EPOCH, metric=OBJECTIVE, mode="max", grace_period=1, reduction_factor=2, max_t=4, baseline=baseline
    )
    good, base, weak = (SimpleNamespace(trial_id=n, config={"optim": {"lr": lr}}) for n, lr in
                        (("good", 0.3), ("base", 0.1), ("weak", 0.2)))  # fmt: skip
    for trial in (good, base, weak):
        asha.on_trial_add(None, trial)
    step = lambda trial, epoch, value: asha.on_trial_result(None, trial, {EPOCH: epoch, OBJECTIVE: value})  # noqa: E731
    assert step(good, 1, 0.5) == TrialScheduler.CONTINUE
    assert step(base, 1, 0.1) == TrialScheduler.CONTINUE  # below the cutoff (0.5): plain ASHA stops it here
    assert step(weak, 1, 0.2) == TrialScheduler.STOP  # the same decision for any other trial
    assert [step(base, e, 0.1) for e in (2, 3)] == [TrialScheduler.CONTINUE] * 2
    assert step(base, 4, 0.1) == TrialScheduler.STOP  # max_t: the schedule's end, as for every trial
    rung_1 = next(recorded for milestone, recorded in asha._brackets[0]._rungs if milestone == 1)
    assert rung_1 == {"good": 0.5, "base": 0.1, "weak": 0.2}  # the baseline's value still counts for the cutoffs


def test_a_sweep_with_asha_keeps_its_space_baseline(tmp_path) -> None:
    from tune.asha import BaselineKeepingASHA
    from tune.plan import SweepPlan
    from tune.settings import SweepSettings

    settings = SweepSettings(space="demo", name="s", storage=str(tmp_path), data_root=None, num_samples=2,
                             max_epochs=None, scheduler="asha", search="optuna", gpus_per_trial=None,
                             cpus_per_trial=1, max_concurrent=None, address=None, mlflow_uri="sqlite:///x.db",
                             seed=0)  # fmt: skip
    space = search_spaces.get("demo")
    scheduler = SweepPlan(space, settings).scheduler()
    assert isinstance(scheduler, BaselineKeepingASHA) and scheduler.baseline == space.baseline != {}


def test_the_summary_states_the_sweep_overhead(sweep, runs) -> None:
    client, trial_runs = runs
    exp = client.get_experiment_by_name(sweep.name)
    (parent,) = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'")
    own = sum(r.data.metrics.get(OWN_TIME, 0.0) for r in trial_runs.values())  # every trial's last report
    assert own > 0 and parent.data.metrics["sweep/own_time_s"] == pytest.approx(own)
    wall, share = parent.data.metrics["sweep/wall_time_s"], parent.data.metrics["sweep/overhead"]
    slot_use = parent.data.metrics["sweep/slot_use"]
    assert slot_use == pytest.approx(own / (2 * wall)) and 0 < share < 1  # --max-concurrent 2 on 2 cores
    line = next(ln for ln in (sweep.root / "sweep.log").read_text().splitlines() if ln.startswith("Overhead "))
    assert line.startswith(f"Overhead {100 * share:.1f} %: for that share of the {wall / 60:.1f} min since the command")
    assert f"the 2 trial slot(s) spent {100 * slot_use:.1f} % of their time" in line
