"""The MLflow side of a sweep: one experiment, a parent run, one nested child run per trial, resume-safe.

This is the only MLflow writer of a sweep and lives in the driver (no Ray import here, so it is testable
alone). Its state, ``<state dir>/mlflow.json`` (tracking URI, experiment and parent run ids, trial id -> run
id), is written atomically on every change and can be rebuilt from MLflow itself (tags ``dcml.sweep``,
``dcml.role`` and ``ray.trial_id``). Metrics are logged with ``step = epoch``; a (key, step) pair is never
logged twice, even when Ray re-delivers the epochs a resumed trial repeats after restoring an older
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from dcml_core.metric_names import EPOCH
from dcml_core.tracking import TrackingError

STATE_FILE = "mlflow.json"
SWEEP_TAG, ROLE_TAG, TRIAL_TAG = "dcml.sweep", "dcml.role", "ray.trial_id"
STOPPED_TAG, ERROR_TAG = "dcml.stopped_early", "dcml.error"
METRIC_PREFIXES = ("train/", "val/", "test/", "best/", "time/", "final/")
_BATCH = 100  # params and tags per log_batch request (MLflow limit); metrics allow 1000
_TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store go next to its database file; a server decides for itself (None)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts" / experiment).resolve().as_uri()
    return None


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The finite numeric training/evaluation values of a Tune result (Ray's bookkeeping keys left out)."""
    out = {}
    for key, value in result.items():
        if key != EPOCH and not key.startswith(METRIC_PREFIXES):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        out[key] = float(value)
    return out


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


class SweepTracker:
    """Parent run + nested child runs of one sweep in one MLflow experiment (named after the sweep)."""

    def __init__(self, tracking_uri: str, state_dir: str | Path, sweep_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.sweep_name = sweep_name
        self.state_path = Path(state_dir) / STATE_FILE
        self.client = MlflowClient(tracking_uri)
        self._lock = threading.RLock()
        self._last_step: dict[str, int] = {}  # run id -> last epoch logged (loaded from MLflow on first use)
        self._status: dict[str, str] = {}
        self.state: dict[str, Any] = {"tracking_uri": tracking_uri, "sweep": sweep_name, "trials": {}}
        if self.state_path.exists():
            self.state.update(json.loads(self.state_path.read_text()))

    # ------------------------------------------------------------------ sweep (parent run)
    @property
    def experiment_id(self) -> str:
        return self.state["experiment_id"]

    @property
    def parent_run_id(self) -> str:
        return self.state["parent_run_id"]

    def start_sweep(self, params: dict[str, Any], tags: dict[str, str], resume: bool = False) -> str:
        """Create (or, on resume, reopen) the experiment and the parent run; returns the parent run id."""
        with self._lock:
            self.state["experiment_id"] = self._experiment()
            run_id = self.state.get("parent_run_id") or self._find_parent()
            if run_id is not None and not resume:
                raise TrackingError(
                    f"MLflow already holds a sweep '{self.sweep_name}' (parent run {run_id} in "
                    f"{self.tracking_uri}); continue it with --resume or choose another --name"
                )
            self.state["sessions"] = int(self.state.get("sessions", 0)) + 1
            if run_id is None:
                run = self.client.create_run(
                    self.experiment_id,
                    run_name=self.sweep_name,
                    tags={**tags, SWEEP_TAG: self.sweep_name, ROLE_TAG: "parent"},
                )
                run_id = run.info.run_id
                self._log_params(run_id, params)
            else:
                self.client.update_run(run_id, status="RUNNING")
                self._log_tags(run_id, {f"dcml.resumed_at.{int(time.time())}": tags.get("dcml.command", "")})
            self.state["parent_run_id"] = run_id
            self._save()
            return run_id

    def finish_sweep(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        """Log the sweep summary on the parent run (step = driver session, 0 first) and end it."""
        with self._lock:
            step = int(self.state.get("sessions", 1)) - 1
            self._log_metrics(self.parent_run_id, {k: v for k, v in metrics.items() if _finite(v)}, step=step)
            self.client.set_terminated(self.parent_run_id, status=status)

    def _experiment(self) -> str:
        if self.state.get("experiment_id"):
            return self.state["experiment_id"]
        exp = self.client.get_experiment_by_name(self.sweep_name)
        if exp is not None:
            if exp.lifecycle_stage != "active":
                raise TrackingError(
                    f"MLflow experiment '{self.sweep_name}' is deleted in {self.tracking_uri}; restore it "
                    "(mlflow experiments restore) or choose another --name"
                )
            return exp.experiment_id
        location = artifact_location(self.tracking_uri, self.sweep_name)
        return self.client.create_experiment(
            self.sweep_name, artifact_location=location, tags={SWEEP_TAG: self.sweep_name}
        )

    def _find_parent(self) -> str | None:
        runs = self._search(f"tags.`{SWEEP_TAG}` = '{self.sweep_name}' and tags.`{ROLE_TAG}` = 'parent'")
        return runs[0].info.run_id if runs else None

    # ------------------------------------------------------------------ trials (child runs)
    def run_id(self, trial_id: str) -> str | None:
        """The child run of a trial, from the state file or found again in MLflow by its tag."""
        with self._lock:
            run_id = self.state["trials"].get(trial_id)
            if run_id is None:
                runs = self._search(f"tags.`{TRIAL_TAG}` = '{trial_id}'")
                if runs:
                    run_id = runs[0].info.run_id
                    self.state["trials"][trial_id] = run_id
                    self._save()
            return run_id

    def start_trial(
        self, trial_id: str, trial_name: str, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str:
        """The trial's child run, created on first sight (with its configuration and extra ``tags``) and set
        RUNNING."""
        with self._lock:
            run_id = self.run_id(trial_id)
            if run_id is None:
                run = self.client.create_run(
                    self.experiment_id,
                    run_name=trial_name,
                    tags={
                        "mlflow.parentRunId": self.parent_run_id,
                        SWEEP_TAG: self.sweep_name,
                        ROLE_TAG: "trial",
                        TRIAL_TAG: trial_id,
                        **(tags or {}),
                    },
                )
                run_id = run.info.run_id
                self.state["trials"][trial_id] = run_id
                self._save()
                self._status[run_id] = "RUNNING"
            self._log_params(run_id, params)  # identical values may be logged again (e.g. after a crash)
            self._set_running(run_id)
            return run_id

    def log_result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Log one epoch's metrics with step = epoch; False (nothing logged) if that epoch is logged."""
        with self._lock:
            run_id = self.run_id(trial_id)
            if run_id is None or EPOCH not in result:
                return False
            step = int(result[EPOCH])
            if step <= self.last_step(run_id):
                return False
            self._set_running(run_id)
            self._log_metrics(run_id, metrics_of(result), step)
            self._last_step[run_id] = step
            return True

    def end_trial(
        self, trial_id: str, status: str, tags: dict[str, str], final: dict[str, float] | None = None
    ) -> None:
        """End a child run: final metrics, tags (``dcml.stopped_early``, ``dcml.error``), terminal status."""
        with self._lock:
            run_id = self.run_id(trial_id)
            if run_id is None or self.status(run_id) in _TERMINAL:
                return
            if final:
                self._log_metrics(
                    run_id, {k: v for k, v in final.items() if _finite(v)}, self.last_step(run_id)
                )
            self._log_tags(run_id, tags)
            self.client.set_terminated(run_id, status=status)
            self._status[run_id] = status

    def log_checkpoint(self, trial_id: str, directory: str | Path, artifact_path: str = "checkpoint") -> None:
        """Upload a checkpoint directory as artifacts of the trial's run."""
        run_id = self.run_id(trial_id)
        if run_id is not None:
            self.client.log_artifacts(run_id, str(directory), artifact_path=artifact_path)

    def close_unfinished(self, status: str = "KILLED") -> list[str]:
        """Set every trial run of this sweep still RUNNING to ``status``; returns their ids."""
        with self._lock:
            closed = []
            query = f"tags.`{SWEEP_TAG}` = '{self.sweep_name}' and tags.`{ROLE_TAG}` = 'trial'"
            for run in self._search(f"{query} and attributes.status = 'RUNNING'"):
                self.client.set_terminated(run.info.run_id, status=status)
                self._status[run.info.run_id] = status
                closed.append(run.info.run_id)
            return closed

    def status(self, run_id: str) -> str:
        """MLflow status of a run (cached for the runs this tracker changed)."""
        if run_id not in self._status:
            self._status[run_id] = self.client.get_run(run_id).info.status
        return self._status[run_id]

    def last_step(self, run_id: str) -> int:
        """Last epoch logged for a run (from MLflow's history of ``epoch`` the first time it is asked)."""
        if run_id not in self._last_step:
            history = self.client.get_metric_history(run_id, EPOCH)
            self._last_step[run_id] = max((m.step for m in history), default=0)
        return self._last_step[run_id]

    # ------------------------------------------------------------------ helpers
    def _set_running(self, run_id: str) -> None:
        if self.status(run_id) != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
            self._status[run_id] = "RUNNING"

    def _search(self, filter_string: str) -> list:
        return list(
            self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1000)
        )

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, _param_value(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[i : i + _BATCH])

    def _log_tags(self, run_id: str, tags: dict[str, str]) -> None:
        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, tags=items[i : i + _BATCH])

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
