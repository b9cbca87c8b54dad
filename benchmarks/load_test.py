"""Load test: many short trials against a real ``mlflow server``, then a full audit of what reached MLflow.

Starts ``mlflow server`` (SQLite backend, 127.0.0.1, a free port) and runs ``tune/run.py --space demo`` with many
1-2 epoch trials, 2 at a time. Then compares Ray's own results (every ``trial_*/result.json`` row) with MLflow:
every trial must have exactly one child run in a terminal state, and every reported (metric, epoch) must be in
MLflow exactly once with the reported value. Prints trials, metrics logged, metrics found, duplicates,
missing, trial retries and the MLflow outage warnings of the driver; exit code 1 on any mismatch.
Everything started here is stopped by PID.

    python benchmarks/load_test.py                      # 40 trials x <= 2 epochs, 2 at a time
    python benchmarks/load_test.py --trials 10 --epochs 1   # quicker

Results: ``benchmarks/results/load_test.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import LoadMonitor, machine_info, save_json  # noqa: E402
from dcml_core.tracking import TRIAL_TAG  # noqa: E402
from tests.test_tune_support import (  # noqa: E402
    free_port,
    http_ok,
    kill_session,
    run_sweep_cli,
    start,
    sweep_env,
    wait_for,
)
from tune.trial_run import metrics_of  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "load_test.json"
NAME = "load"


def ray_results(sweep: Path) -> dict[str, list[dict]]:
    """Trial id -> the result rows Ray wrote for it."""
    out = {}
    for folder in sorted(sweep.glob("trial_*")):
        lines = (folder / "result.json").read_text().splitlines() if (folder / "result.json").exists() else []
        out[folder.name.removeprefix("trial_")] = [json.loads(x) for x in lines if x.strip()]
    return out


def trial_failures(sweep: Path) -> int:
    """Sum of the trials' failure counts in Tune's newest experiment state (each one a restart)."""
    states = sorted(sweep.glob("experiment_state-*.json"))
    if not states:
        return 0
    total = 0
    for _, run_meta in json.loads(states[-1].read_text())["trial_data"]:
        total += int(json.loads(run_meta).get("num_failures", 0))
    return total


def audit(uri: str, sweep: Path) -> dict:
    """Compare Ray's results with MLflow's child runs and metric histories."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(NAME)
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=5000) if TRIAL_TAG in r.data.tags]
    per_trial = Counter(r.data.tags[TRIAL_TAG] for r in runs)
    by_trial = {r.data.tags[TRIAL_TAG]: r for r in runs}
    results = ray_results(sweep)
    logged = found = duplicates = missing = wrong = 0
    for trial, rows in results.items():
        run = by_trial.get(trial)
        expected = {}
        for row in rows:
            for key, value in metrics_of(row).items():
                expected[(key, int(row["epoch"]))] = value
        logged += len(expected)
        if run is None:
            missing += len(expected)
            continue
        histories = {key: client.get_metric_history(run.info.run_id, key) for key in {k for k, _ in expected}}
        for (key, step), value in expected.items():
            hits = [m for m in histories[key] if m.step == step]
            if not hits:
                missing += 1
                continue
            found += 1
            duplicates += len(hits) - 1
            if not math.isclose(hits[0].value, value, rel_tol=1e-6, abs_tol=1e-9):
                wrong += 1
    statuses = Counter(r.info.status for r in runs)
    return {
        "trials": len(results),
        "child_runs": len(runs),
        "trials_without_exactly_one_run": sum(1 for t in results if per_trial.get(t, 0) != 1),
        "run_statuses": dict(statuses),
        "metrics_logged": logged,
        "metrics_found": found,
        "metrics_missing": missing,
        "metrics_duplicated": duplicates,
        "metrics_with_wrong_value": wrong,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (ASHA may stop a trial after 1)")
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--space", default="demo")
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args()
    bin_dir = Path(sys.executable).parent
    with (
        tempfile.TemporaryDirectory(prefix="loadtest_") as tmp,
        tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as ray_tmp,
    ):
        tmp = Path(tmp)
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        env = sweep_env(Path(ray_tmp), OMP_WAIT_POLICY="PASSIVE")
        server = start(
            [str(bin_dir / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
             "--default-artifact-root", str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
            env, tmp / "server.log",
        )  # fmt: skip
        try:
            if not wait_for(lambda: http_ok(f"{uri}/health"), 120):
                print((tmp / "server.log").read_text()[-3000:])
                return 1
            monitor = LoadMonitor()
            started = time.perf_counter()
            sweep_args = [
                "--space", args.space, "--num-samples", str(args.trials), "--max-epochs", str(args.epochs),
                "--max-concurrent", str(args.concurrent), "--storage", str(tmp / "ray"), "--mlflow-uri", uri,
                "--name", NAME,
            ]  # fmt: skip
            code = run_sweep_cli(sweep_args, env, tmp / "sweep.log", cwd=tmp, timeout=args.timeout)
            wall = time.perf_counter() - started
            load = monitor.stop()
            log = (tmp / "sweep.log").read_text(errors="replace")
            figures = audit(uri, tmp / "ray" / NAME)
            figures["trial_retries"] = trial_failures(tmp / "ray" / NAME)
        finally:
            kill_session(server.pid)
    figures.update(
        exit_code=code,
        wall_s=round(wall, 1),
        mlflow_outage_warnings=len(re.findall(r"unreachable", log)),
    )
    ok = (
        code == 0
        and figures["trials"] == args.trials
        and figures["trials_without_exactly_one_run"] == 0
        and figures["metrics_found"] == figures["metrics_logged"]
        and figures["metrics_duplicated"] == 0
        and figures["metrics_with_wrong_value"] == 0
        and set(figures["run_statuses"]) <= {"FINISHED", "FAILED"}
    )
    print(
        f"load test: {args.trials} trials x <= {args.epochs} epochs, {args.concurrent} at a time, {args.space}"
    )
    for key, value in figures.items():
        print(f"  {key:34s} {value}")
    print("PASS" if ok else "FAIL: see above" + ("" if code == 0 else f"\n{log[-3000:]}"))
    settings = {
        "trials": args.trials,
        "epochs": args.epochs,
        "concurrent": args.concurrent,
        "space": args.space,
    }
    path = save_json(RESULTS, {"machine": machine_info("cpu"), "load": load, "settings": settings,
                               "figures": figures, "pass": ok})  # fmt: skip
    print(f"saved {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
