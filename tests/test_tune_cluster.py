"""A two-node Ray cluster on this machine (head + worker, started by the test) and a real ``mlflow server``:
``--address`` with a local SQLite store is refused; with the server the sweep runs trials on both nodes and
logs one nested child run per trial over HTTP. Both nodes tell Ray they have 2 GPUs that CUDA does not have:
``--check-cluster`` and a sweep given a GPU share are refused with the reason, before any trial; CPU trials
run. Every process is stopped by PID (its session), never by name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.test_tune_support import (
    free_port,
    http_ok,
    kill_session,
    run_sweep_cli,
    session_pids,
    short_tmp,  # noqa: F401  (fixture)
    start,
    sweep_env,
    tail,
    tiny_demo,  # noqa: F401  (session fixture)
    wait_for,
)

BIN = Path(sys.executable).parent


def _ray_started(log: Path) -> int:
    """How often ``ray start`` reported its node up in its log."""
    return log.read_text(errors="replace").count("Ray runtime started.")


def _node_rows(log: str) -> list[str]:
    """The node rows of the cluster check's table (they start with the node's IP)."""
    return [ln for ln in log.splitlines() if re.match(r"\d+\.\d+\.\d+\.\d+ \(", ln)]


def test_two_node_cluster_and_mlflow_server(tmp_path, tiny_demo, short_tmp) -> None:  # noqa: F811
    ray_tmp = short_tmp
    env = sweep_env(ray_tmp)
    head_port, mlflow_port = free_port(), free_port()
    uri = f"http://127.0.0.1:{mlflow_port}"
    started = []
    try:
        server = start(
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{tmp_path / 'server.db'}",
            ],
            {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            tmp_path / "server.log",
            tmp_path,
        )
        started.append(server.pid)
        # the server holds its port before Ray starts: Ray's processes bind free ports of their own, and one of them
        # once took the port picked for the server while the server was still importing MLflow
        assert wait_for(lambda: http_ok(f"{uri}/health"), 90), tail(tmp_path / "server.log")
        head = start(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                "--port",
                str(head_port),
                "--num-cpus",
                "1",
                "--num-gpus",
                "2",  # GPUs Ray believes in; CUDA has none
                "--node-ip-address",
                "127.0.0.1",
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(ray_tmp),
                "--disable-usage-stats",
                "--block",
            ],
            env,
            tmp_path / "head.log",
        )
        started.append(head.pid)
        assert wait_for(lambda: _ray_started(tmp_path / "head.log") == 1, 90), tail(tmp_path / "head.log")
        worker = start(
            [
                str(BIN / "ray"),
                "start",
                "--address",
                f"127.0.0.1:{head_port}",
                "--num-cpus",
                "1",
                "--num-gpus",
                "2",  # GPUs Ray believes in; CUDA has none
                "--node-ip-address",
                "127.0.0.2",
                "--disable-usage-stats",
                "--block",
            ],
            env,
            tmp_path / "worker.log",
        )
        started.append(worker.pid)
        assert wait_for(lambda: _ray_started(tmp_path / "worker.log") == 1, 90), tail(tmp_path / "worker.log")

        common = [
            "--space",
            "smoke",
            "--data-root",
            str(tiny_demo),
            "--num-samples",
            "2",  # one trial per node at once (each node has 1 CPU)
            "--max-epochs",
            "2",
            "--address",
            f"127.0.0.1:{head_port}",
            "--storage",
            str(tmp_path / "ray"),
        ]
        # Ray told 2 GPUs per node, none real: every node reports why CUDA cannot be used; nothing is written
        code = run_sweep_cli([*common, "--check-cluster", "--mlflow-uri", uri], env, tmp_path / "check.log",
                             tmp_path, timeout=180)  # fmt: skip
        log = (tmp_path / "check.log").read_text()
        assert code == 2, log[-3000:]
        assert len(_node_rows(log)) == 2 and "127.0.0.2 (" in log, log[-3000:]  # one table row per node
        reasons = [ln for ln in log.splitlines() if ": Ray gives trials 1 GPU here but CUDA is not usable: " in ln]
        assert len(reasons) == 2, log[-3000:]  # each node, with torch's build, the driver's answer, the devices
        assert all("built for CUDA 13.0" in r and "is_available() = False (" in r and "CUDA_VISIBLE_DEVICES=0" in r
                   for r in reasons), reasons  # fmt: skip
        code = run_sweep_cli([*common, "--name", "fake-gpu", "--gpus-per-trial", "0.5", "--mlflow-uri", uri],
                             env, tmp_path / "fake.log", tmp_path, timeout=180)  # fmt: skip
        log = (tmp_path / "fake.log").read_text()
        assert code == 2 and "CUDA is not usable" in log and "0.5 GPU here" in log, log[-3000:]
        assert not (tmp_path / "ray" / "fake-gpu").exists()  # refused before any trial
        # CPU trials on the same cluster: every node usable, the storage shared by both
        code = run_sweep_cli([*common, "--check-cluster", "--gpus-per-trial", "0", "--mlflow-uri", uri], env,
                             tmp_path / "cpu-check.log", tmp_path, timeout=180)  # fmt: skip
        log = (tmp_path / "cpu-check.log").read_text()
        assert code == 0, log[-3000:]
        rows = _node_rows(log)
        assert len(rows) == 2 and all(row.split()[-3:] == ["ok", "ok", "-"] for row in rows), rows  # weights,
        # storage shared, no GPU matrix product (no CUDA)
        # a local SQLite store cannot serve a multi-node cluster: refused before any trial, nothing written
        code = run_sweep_cli(
            [*common, "--name", "local", "--mlflow-uri", str(tmp_path / "local")],
            env,
            tmp_path / "local.log",
            tmp_path,
            timeout=180,
        )
        log = (tmp_path / "local.log").read_text()
        assert code == 2 and "cannot be shared by the nodes" in log and "mlflow server" in log, log[-2000:]
        assert not (tmp_path / "ray" / "local").exists()

        code = run_sweep_cli(
            [*common, "--name", "cluster", "--gpus-per-trial", "0", "--mlflow-uri", uri],
            env,
            tmp_path / "sweep.log",
            tmp_path,
            timeout=420,
        )
        assert code == 0, tail(tmp_path / "sweep.log")
        assert "2 node(s)" in (tmp_path / "sweep.log").read_text()

        results = [
            json.loads(line)
            for path in (tmp_path / "ray" / "cluster").glob("trial_*/result.json")
            for line in path.read_text().splitlines()
            if line.strip()
        ]
        assert len({r["node_ip"] for r in results}) == 2, {
            r["node_ip"] for r in results
        }  # trials on both nodes

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("cluster")
        runs = list(client.search_runs([exp.experiment_id]))
        children = [r for r in runs if r.data.tags.get("dcml.role") == "trial"]
        parent = next(r for r in runs if r.data.tags.get("dcml.role") == "parent")
        assert len(children) == 2 and all(
            r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children
        )
        assert all(r.info.status == "FINISHED" for r in runs)
        assert (
            parent.data.metrics["sweep/trials_completed"] + parent.data.metrics["sweep/trials_stopped_early"]
            == 2
        )
        best = max(children, key=lambda r: r.data.metrics["best/val/recall_at_1"])
        assert [a.path for a in client.list_artifacts(best.info.run_id)] == ["checkpoint"]
        ckpt = {a.path for a in client.list_artifacts(best.info.run_id, "checkpoint")}
        assert {"checkpoint/state.pt", "checkpoint/config.json", "checkpoint/tune_state.json"} <= ckpt
    finally:
        for sid in reversed(started):
            kill_session(sid)


_LOCAL_RAY = r"""
import json, os, sys, time, ray
from tune.cluster import start_ray

start_ray(None)
time.sleep(3)  # Ray would have prestarted its idle workers by now
print("started", flush=True)
sys.stdin.readline()  # the test lists this session's processes meanwhile

@ray.remote(num_cpus=1, runtime_env={"env_vars": {"PL_DISABLE_FORK": "1"}})  # as Tune gives every trainable
class Trial:
    def where(self):
        import tune.trainable  # noqa: F401 - as Tune's actor does before it builds the trainable
        from ray.tune.utils.log import disable_ipython

        disable_ipython()  # what Trainable.__init__ calls in every trial process
        ipython = "IPython.core.interactiveshell" in sys.modules
        return os.getpid(), os.environ.get("OMP_WAIT_POLICY"), os.environ.get("PL_DISABLE_FORK"), ipython

pid, wait_policy, own_env, trial_ipython = ray.get(Trial.remote().where.remote(), timeout=60)
import tune.trainable  # noqa: F401,E402 - the driver imports it too, and keeps IPython
import IPython  # noqa: F401,E402
config = ray._private.state.state.get_system_config()  # what the cluster runs with, from its GCS
retry = {k: config.get(k) for k in ("raylet_client_connect_timeout_milliseconds", "raylet_client_num_connect_attempts")}
print(json.dumps({"actor_pid": pid, "wait_policy": wait_policy, "own_env": own_env, "retry": retry,
                  "trial_ipython": trial_ipython}), flush=True)
ray.shutdown()
"""


def _process_name(pid: int) -> bytes:
    """The name a process shows in ``/proc/<pid>/cmdline`` (Ray renames its workers ``ray::IDLE``, ...)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return b""


def test_a_local_ray_starts_no_idle_workers_and_still_starts_trials(short_tmp) -> None:  # noqa: F811
    """Idle workers that Ray starts ahead never run a Tune trial (a trainable's own runtime environment needs a new
    worker); the local Ray starts none, and an actor with its own runtime environment still starts and inherits the
    driver's worker environment. The cluster retries a local connection every 100 ms (not every second), with the
    same 10 s of patience. A trial process does not import IPython for Ray's notebook clean-up (the driver can)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCAL_RAY], env=sweep_env(short_tmp), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()[-2000:]
        idle = [pid for pid in session_pids(proc.pid) if _process_name(pid) == b"ray::IDLE"]
        out, err = proc.communicate("go\n", timeout=120)
    finally:
        kill_session(proc.pid, grace=0)  # Ray's processes too, by PID
    assert proc.returncode == 0, err[-2000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert idle == [] and seen["actor_pid"] > 0
    assert seen["wait_policy"] == "PASSIVE" and seen["own_env"] == "1"
    retry = seen["retry"]
    assert retry == {"raylet_client_connect_timeout_milliseconds": 100, "raylet_client_num_connect_attempts": 100}
    assert seen["trial_ipython"] is False
