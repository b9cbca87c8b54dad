"""The sweep driver is killed with SIGKILL mid-sweep and resumed with ``--resume``: every trial ends exactly
once, its epochs are contiguous, MLflow holds exactly one child run per trial, none RUNNING, no step logged
twice, and the Optuna study agrees with what ASHA did."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import optuna
from mlflow import MlflowClient

from dcml_core.metric_names import OBJECTIVE
from tests.test_tune_support import (
    REPO,
    kill_session,
    run_sweep_cli,
    short_tmp,  # noqa: F401  (fixture)
    start,
    sweep_env,
    tail,
    tiny_demo,  # noqa: F401  (session fixture)
    wait_for,
)

EPOCHS = 6  # ASHA rungs at epochs 1, 2 and 4


def _snapshot(sweep: Path) -> dict[str, tuple[str, int]]:
    """Trial id -> (status, last epoch) from the newest experiment-state snapshot Tune wrote."""
    states = sorted(sweep.glob("experiment_state-*.json"))  # names carry the session's start time
    if not states:
        return {}
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
    except (OSError, ValueError):  # being rewritten
        return {}
    out = {}
    for meta, run_meta in trials:
        meta, run_meta = json.loads(meta), json.loads(run_meta)
        out[meta["trial_id"]] = (meta["status"], int((run_meta.get("last_result") or {}).get("epoch", 0)))
    return out


def _running_with_checkpoint(sweep: Path) -> bool:
    """Kill point: Tune's own state records a running trial that has reported (and checkpointed) epochs."""
    return any(status == "RUNNING" and epoch >= 2 for status, epoch in _snapshot(sweep).values())


def _restored(trial_dir: Path) -> bool:
    """True when a trial continued from a checkpoint (Tune restarts iterations_since_restore at 1)."""
    results = [
        json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()
    ]
    return any(r["iterations_since_restore"] < r["training_iteration"] for r in results)


def test_killed_driver_resumes_without_duplicates(tmp_path, tiny_demo, short_tmp) -> None:  # noqa: F811
    env = sweep_env(short_tmp)
    sweep = tmp_path / "ray" / "kr"
    args = [
        "--space",
        "smoke",
        "--data-root",
        str(tiny_demo),
        "--num-samples",
        "3",
        "--max-epochs",
        str(EPOCHS),
        "--storage",
        str(tmp_path / "ray"),
        "--mlflow-uri",
        str(tmp_path / "mlflow"),
        "--name",
        "kr",
    ]
    first = start(
        [sys.executable, str(REPO / "tune" / "run.py"), *args], env, tmp_path / "first.log", tmp_path
    )
    try:
        wait_for(lambda: _running_with_checkpoint(sweep) or first.poll() is not None, 240, 0.2)
        assert first.poll() is None, "the sweep ended before it could be killed:\n" + tail(
            tmp_path / "first.log"
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        # Ray's daemons and agents the killed driver left behind (its agents ignore SIGTERM), by PID
        kill_session(first.pid, grace=0)
    before = _snapshot(sweep)
    interrupted = [t for t, (status, epoch) in before.items() if status == "RUNNING" and epoch >= 2]
    assert interrupted, before

    code = run_sweep_cli([*args, "--resume"], env, tmp_path / "resume.log", tmp_path, timeout=420)
    assert code == 0, tail(tmp_path / "resume.log")

    after = _snapshot(sweep)
    assert len(after) == 3 and set(before) <= set(after)
    assert {status for status, _ in after.values()} == {"TERMINATED"}, after
    assert all(_restored(sweep / f"trial_{t}") for t in interrupted)  # continued from their checkpoints

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kr")
    runs = list(client.search_runs([exp.experiment_id]))
    parents = [r for r in runs if r.data.tags.get("dcml.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("dcml.role") == "trial"]
    assert len(parents) == 1 and any(k.startswith("dcml.resumed_at.") for k in parents[0].data.tags)
    assert sorted(r.data.tags["ray.trial_id"] for r in children) == sorted(after)  # one child per trial
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)

    study = optuna.load_study(study_name="kr", storage=f"sqlite:///{sweep / 'sweep_state' / 'optuna.db'}")
    summary = client.get_metric_history(parents[0].info.run_id, "sweep/trials_completed")
    assert [m.step for m in summary] == [1]  # logged by the second driver session (the first was killed)
    assert sorted(t.state.name for t in study.trials) == sorted(
        "PRUNED" if r.data.tags["dcml.stopped_early"] == "true" else "COMPLETE" for r in children
    )
    for run in children:
        epochs = int(run.data.metrics["epoch"])
        assert (epochs < EPOCHS) == (run.data.tags["dcml.stopped_early"] == "true")
        for key, first in ((OBJECTIVE, 0), ("epoch", 0), ("train/loss", 1), ("best/val/recall_at_1", 1)):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]  # 0: the starting network
            assert sorted(steps) == list(range(first, epochs + 1)), (run.info.run_name, key, steps)
