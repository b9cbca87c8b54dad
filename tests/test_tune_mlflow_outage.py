"""The MLflow server goes down mid-sweep: training goes on, what could not be logged is logged once the server
is back (or by ``--sync-mlflow`` from Ray's results), no metric lost, none twice.

A real ``mlflow server`` (one for the module, SQLite backend) is stopped by PID and started again on the same
port and database. Unit level: the callback fed with fake trials. End to end: a real tiny sweep whose server is
killed after its first logged epoch and comes back only after the sweep has ended.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

import search_spaces
from tests.test_tune_support import (
    REPO,
    free_port,
    http_ok,
    kill_session,
    short_tmp,  # noqa: F401  (fixture)
    start,
    sweep_env,
    tail,
    tiny_demo,  # noqa: F401  (session fixture)
    wait_for,
)
from tests.test_tune_tracker import FakeTrial
from tune import mlflow_callback
from tune.mlflow_callback import MLflowSweepCallback, writer_for
from tune.mlflow_writer import HTTP_LIMITS
from tune.run import main as run_main
from tune.trial_run import final_metrics, metrics_of

BIN = Path(sys.executable).parent


class Server:
    """``mlflow server`` on a fixed loopback port and SQLite file, started and stopped (by PID) at will."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.proc = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        return http_ok(f"{self.uri}/health")

    def start(self, wait: bool = True) -> None:
        cmd = [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        cmd += ["--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}"]
        env = {**sweep_env(self.folder), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = start(cmd, env, self.folder / "server.log", self.folder)
        if wait:
            self.wait()

    def wait(self) -> None:
        assert wait_for(self.healthy, 90, 0.2), tail(self.folder / "server.log")

    def stop(self) -> None:
        kill_session(self.proc.pid, grace=0)  # abrupt, like a crash; its whole session, by PID
        assert not self.healthy()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("mlflow_server"))
    srv.start()
    yield srv
    kill_session(srv.proc.pid, grace=0)


@pytest.fixture(autouse=True)
def fresh_writers(monkeypatch):
    for key in HTTP_LIMITS:  # the writer sets them for its process: restore them after each test
        monkeypatch.setenv(key, HTTP_LIMITS[key])
        monkeypatch.delenv(key)
    mlflow_callback._WRITERS.clear()
    yield
    mlflow_callback._WRITERS.clear()


def _result(trial: str, epoch: int) -> dict[str, Any]:
    value = 0.1 * epoch + (0.01 if trial == "b" else 0.0)
    return {"epoch": epoch, "val/recall_at_1": value, "train/loss": 2.0 / epoch, "training_iteration": epoch}


def _histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def _expected(results: list[dict[str, Any]], final: bool) -> dict[str, list[tuple[int, float]]]:
    """Every (step, value) a run must hold: the first report of an epoch, plus final/* at the last epoch."""
    seen: dict[tuple[str, int], float] = {}
    for result in results:
        for key, value in metrics_of(result).items():
            seen.setdefault((key, int(result["epoch"])), value)
    if final:
        last = max(int(r["epoch"]) for r in results)
        seen.update({(k, last): v for k, v in final_metrics(results[-1]).items()})
    out: dict[str, list[tuple[int, float]]] = {}
    for (key, step), value in sorted(seen.items()):
        out.setdefault(key, []).append((step, value))
    return out


def _feed(cb: MLflowSweepCallback, trial: FakeTrial, epoch: int, fed: dict[str, list]) -> None:
    trial.last_result = _result(trial.trial_id, epoch)
    fed[trial.trial_id].append(trial.last_result)
    cb.on_trial_result(0, [], trial, trial.last_result)


def _complete(cb: MLflowSweepCallback, trial: FakeTrial) -> None:
    trial.status, trial.last_result["done"] = "TERMINATED", True
    cb.on_trial_complete(0, [], trial)


def test_callback_buffers_while_the_server_is_down_and_delivers_everything_once(
    server, tmp_path, capsys
) -> None:
    name = "unit"
    writer = writer_for(server.uri, name)
    writer.open({"space": "smoke"}, {})
    writer.retry_interval = 0.3
    cb = MLflowSweepCallback(server.uri, name, max_epochs=4)
    config = search_spaces.get("smoke").sample(1, seed=0)[0]
    a, b = FakeTrial("a", config), FakeTrial("b", config)
    fed: dict[str, list] = {"a": [], "b": []}
    cb.on_trial_start(0, [a], a)
    _feed(cb, a, 1, fed)
    _feed(cb, a, 2, fed)

    server.stop()
    began = time.time()
    cb.on_trial_start(0, [a, b], b)  # fails (bounded retries), then every update waits in its trial's log
    for epoch in (1, 2):
        _feed(cb, b, epoch, fed)
    _feed(cb, a, 3, fed)
    again = {**_result("a", 3), "val/recall_at_1": 0.99}  # epoch 3 again (a restored trial): not logged
    fed["a"].append(again)
    cb.on_trial_result(0, [], a, again)
    time.sleep(0.4)
    cb.on_step_end(0, [a, b])  # a retry while still down: probe fails fast
    _feed(cb, a, 4, fed)
    _complete(cb, a)
    assert time.time() - began < 10  # MLflow's own retries are bounded; then a fast /health probe
    assert sorted(writer.pending) == ["a", "b"]
    err = capsys.readouterr().err
    assert err.count(f"MLflow {server.uri} unreachable: buffering; will retry") == 1, err

    server.start()
    time.sleep(0.4)
    cb.on_step_end(0, [a, b])
    out = capsys.readouterr().out
    assert not writer.pending and "delivered the buffered updates of 2 trial(s)" in out, out
    _feed(cb, b, 3, fed)
    _feed(cb, b, 4, fed)
    _complete(cb, b)
    cb.on_experiment_end([a, b])
    writer.finish({"sweep/trials_completed": 2})

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(name)
    runs = list(client.search_runs([exp.experiment_id]))
    children = {r.data.tags["ray.trial_id"]: r for r in runs if r.data.tags["dcml.role"] == "trial"}
    assert sorted(children) == ["a", "b"] and len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    for trial_id, run in children.items():
        assert run.data.tags["dcml.stopped_early"] == "false"
        assert run.data.params["data.dataset"] == "demo"
        assert _histories(client, run.info.run_id) == _expected(fed[trial_id], final=True), trial_id
    assert "unreachable" not in capsys.readouterr().err  # nothing failed after the restart


def test_a_request_that_reached_the_server_before_failing_is_not_logged_twice(
    server, tmp_path, capsys
) -> None:
    writer = writer_for(server.uri, "in_doubt")
    writer.open({}, {})
    writer.retry_interval = 0.0
    cb = MLflowSweepCallback(server.uri, "in_doubt", max_epochs=3)
    trial = FakeTrial("c", search_spaces.get("smoke").sample(1, seed=0)[0])
    fed: dict[str, list] = {"c": []}
    cb.on_trial_start(0, [trial], trial)
    _feed(cb, trial, 1, fed)

    real = writer.client.log_batch
    calls = {"n": 0}

    def delivered_then_lost(run_id, metrics=(), params=(), tags=(), **kw):
        real(run_id, metrics=metrics, params=params, tags=tags, **kw)
        calls["n"] += 1
        if metrics and calls["n"] == 1:  # the server applied it; the answer never came back
            raise requests.ConnectionError("connection reset by peer")

    writer.client.log_batch = delivered_then_lost
    _feed(cb, trial, 2, fed)  # applied, yet reported as failed: kept for a retry
    assert list(writer.pending) == ["c"]
    _feed(cb, trial, 3, fed)  # the retry reads the run's last epoch again (2) before logging
    _complete(cb, trial)
    assert not writer.pending
    run_id = writer.find("c").run_id
    assert _histories(writer.client, run_id) == _expected(fed["c"], final=True)
    assert "delivered the buffered updates of 1 trial(s)" in capsys.readouterr().out


def _args(tmp_path: Path, tiny: Path, uri: str) -> list[str]:
    return [
        "--space", "smoke", "--data-root", str(tiny), "--num-samples", "2", "--max-epochs", "3",
        "--scheduler", "fifo", "--search", "random", "--storage", str(tmp_path / "ray"),
        "--mlflow-uri", uri, "--name", "down",
    ]  # fmt: skip


def _logged_epochs(uri: str) -> int:
    """Epoch values logged so far in sweep ``down`` (0 while it has none, or the server is busy)."""
    try:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("down")
        runs = client.search_runs([exp.experiment_id], "tags.`dcml.role` = 'trial'") if exp else []
        return sum(len(client.get_metric_history(r.info.run_id, "epoch")) for r in runs)
    except Exception:  # noqa: BLE001 - polling
        return 0


def test_sweep_survives_a_dead_server_and_sync_mlflow_completes_it(
    server,
    tmp_path,
    tiny_demo,  # noqa: F811
    short_tmp,  # noqa: F811
    capsys,
) -> None:
    env = sweep_env(short_tmp)
    log = tmp_path / "sweep.log"
    cmd = [sys.executable, str(REPO / "tune" / "run.py"), *_args(tmp_path, tiny_demo, server.uri)]
    sweep = start(cmd, env, log, tmp_path)
    try:
        assert wait_for(lambda: _logged_epochs(server.uri) >= 1 or sweep.poll() is not None, 240, 0.1)
        server.stop()
        assert sweep.poll() is None, "the sweep ended before the server could be killed:\n" + tail(log)
        # the summary's last line comes after the driver's last MLflow call: the server may start meanwhile
        wait_for(lambda: "MLflow UI:" in log.read_text() or sweep.poll() is not None, 240, 0.2)
        server.start(wait=False)
        code = sweep.wait(timeout=240)
    finally:
        kill_session(sweep.pid, grace=0)  # leftovers of its Ray, if any (the driver has ended or failed)
        if server.proc.poll() is not None:
            server.start(wait=False)
        server.wait()
    text = log.read_text()
    assert code == 0, tail(log)
    assert text.count("unreachable: buffering; will retry") == 1, tail(log)
    assert "Trials: 2 completed" in text  # the summary, as usual
    storage = tmp_path / "ray"
    hint = f"python tune/run.py --space smoke --name down --storage {storage} --sync-mlflow"
    assert hint in text, tail(log)

    capsys.readouterr()
    assert run_main(["--space", "smoke", "--name", "down", "--storage", str(storage), "--sync-mlflow"]) == 0
    first = capsys.readouterr().out
    added = int(re.search(r"(\d+) added", first).group(1))
    assert added > 0 and "2 trials" in first, first

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name("down")
    runs = list(client.search_runs([exp.experiment_id]))
    children = {r.data.tags["ray.trial_id"]: r for r in runs if r.data.tags["dcml.role"] == "trial"}
    folders = sorted(storage.glob("down/trial_*/result.json"))
    assert len(folders) == 2 and len(children) == 2 and len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    for path in folders:
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        trial_id = results[-1]["trial_id"]
        assert max(r["epoch"] for r in results) == 3
        assert _histories(client, children[trial_id].info.run_id) == _expected(results, final=True)
        assert children[trial_id].data.tags["dcml.stopped_early"] == "false"

    assert run_main(["--name", "down", "--storage", str(storage), "--sync-mlflow"]) == 0
    second = capsys.readouterr().out
    assert re.search(r"\b0 added\b", second) and "0 child run(s) created" in second, second
    assert f"{sum(len(v) for v in _expected_all(folders).values())} metric values already present" in second


def _expected_all(folders: list[Path]) -> dict[tuple[str, str], list]:
    out = {}
    for path in folders:
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for key, pairs in _expected(results, final=True).items():
            out[(path.parent.name, key)] = pairs
    return out


def test_sync_mlflow_of_an_unknown_sweep_is_a_clear_usage_error(tmp_path, capsys) -> None:
    code = run_main(["--name", "nosuch", "--storage", str(tmp_path), "--sync-mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "no sweep 'nosuch'" in err and "check --name and --storage" in err, err
    assert run_main(["--sync-mlflow"]) == 2
    assert "--sync-mlflow needs --name" in capsys.readouterr().err
    assert run_main(["--name", "x", "--sync-mlflow", "--resume"]) == 2
    assert "--resume cannot be given with --sync-mlflow" in capsys.readouterr().err


def test_sync_mlflow_ends_runs_as_ray_recorded_them(server, tmp_path, capsys) -> None:
    """No MLflow trace at all: a trial stopped early, a failed one, an unfinished one, one that never reported."""
    sweep = tmp_path / "ray" / "synth"
    (sweep / "sweep_state").mkdir(parents=True)
    settings = {
        "name": "synth",
        "space": "smoke",
        "mlflow_uri": server.uri,
        "num_samples": 4,
        "max_epochs": 3,
    }
    (sweep / "sweep_state" / "sweep.json").write_text(json.dumps(settings))
    config = search_spaces.get("smoke").sample(1, seed=0)[0]
    config["schedule"]["n_epochs"] = 3
    epochs = {"early": 2, "failed": 1, "open": 1, "silent": 0}
    results: dict[str, list] = {}
    for trial_id, n in epochs.items():
        folder = sweep / f"trial_{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(config))
        results[trial_id] = [
            {**_result(trial_id, e), "trial_id": trial_id, "done": False} for e in range(1, n + 1)
        ]
        if trial_id == "early":
            results[trial_id][-1]["done"] = True  # ASHA's stop decision marks the last result
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results[trial_id]))
    (sweep / "trial_failed" / "error.txt").write_text(
        "Traceback ...\nNonFiniteLossError: training loss is nan\n"
    )

    assert run_main(["--name", "synth", "--storage", str(tmp_path / "ray"), "--sync-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "(parent run created): 4 trials, 3 child run(s) created, 0 metric values already present" in out

    client = MlflowClient(server.uri)
    runs = list(client.search_runs([client.get_experiment_by_name("synth").experiment_id]))
    by_trial = {r.data.tags.get("ray.trial_id"): r for r in runs}
    assert sorted(by_trial, key=str) == [None, "early", "failed", "open"]  # None: the parent
    early, failed, still = by_trial["early"], by_trial["failed"], by_trial["open"]
    assert (early.info.status, early.data.tags["dcml.stopped_early"]) == ("FINISHED", "true")
    assert failed.info.status == "FAILED"
    assert failed.data.tags["dcml.error"] == "NonFiniteLossError: training loss is nan"
    assert still.info.status == "KILLED"
    assert _histories(client, early.info.run_id) == _expected(results["early"], final=True)
    assert _histories(client, failed.info.run_id) == _expected(results["failed"], final=False)
    parent = by_trial[None]
    assert parent.info.status == "KILLED"  # a trial is unfinished: the sweep can still be resumed
    assert (
        parent.data.metrics["sweep/trials_stopped_early"] == 1
        and parent.data.metrics["sweep/trials_failed"] == 1
    )

    assert (
        run_main(["--space", "smoke", "--name", "synth", "--storage", str(tmp_path / "ray"), "--sync-mlflow"])
        == 0
    )
    again = capsys.readouterr().out
    assert "(parent run found)" in again and "0 child run(s) created" in again and " 0 added" in again, again
    assert "0 run(s) ended" in again
    assert (
        run_main(["--space", "demo", "--name", "synth", "--storage", str(tmp_path / "ray"), "--sync-mlflow"])
        == 2
    )
    assert "was run with --space smoke, not demo" in capsys.readouterr().err
