"""The MLflow side of a sweep: one experiment, a parent run, one nested child run per trial, resume-safe.

This is the only MLflow writer of a sweep and lives in the driver (no Ray import here, so it is testable
alone). Its state, ``<state dir>/mlflow.json`` (tracking URI, experiment and parent run ids, trial id -> run
id), is written atomically on every change and can be rebuilt from MLflow itself (tags ``dcml.sweep``,
``dcml.role`` and ``ray.trial_id``). Metrics are logged with ``step = epoch``; a (key, step) pair is never
logged twice, even when Ray re-delivers the epochs a resumed trial repeats after restoring an older
checkpoint.

Outages: an MLflow call that fails because the server is unreachable (connection refused, timeout, 5xx) does
not stop the sweep. The operation and every later one are kept in order in memory, retried at most every
``retry_interval`` seconds and at the sweep's end, and delivered once the server answers again; an operation
whose request may have reached the server before the failure is re-sent only for the (key, step) pairs MLflow's
history lacks. What is still pending at the end is recovered from Ray's results by ``--sync-mlflow``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from dcml_core.metric_names import EPOCH
from dcml_core.tracking import TrackingError

STATE_FILE = "mlflow.json"
SWEEP_TAG, ROLE_TAG, TRIAL_TAG = "dcml.sweep", "dcml.role", "ray.trial_id"
STOPPED_TAG, ERROR_TAG = "dcml.stopped_early", "dcml.error"
METRIC_PREFIXES = ("train/", "val/", "test/", "best/", "time/", "final/")
_BATCH = 100  # params and tags per log_batch request (MLflow limit); metrics allow 1000
_TERMINAL = {"FINISHED", "FAILED", "KILLED"}
RETRY_INTERVAL_S = 10.0  # at most one retry of the pending operations per this many seconds
# Bounded MLflow HTTP calls in the driver (MLflow's defaults retry 7 times with backoff 2: minutes per call).
# One immediate retry rides out a dropped connection; longer outages are the buffer's job (retried every
# RETRY_INTERVAL_S). A refused connection fails at once, a hanging server after 2 x 10 s.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


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


def is_outage(err: BaseException) -> bool:
    """True when ``err`` means the tracking server is unreachable or failing (retry later), not a bad request."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        if isinstance(seen, MlflowException):
            # rest_utils wraps transport failures (refused, reset, retries exhausted) as "API request to ..."
            if str(seen.message).startswith("API request to") or seen.get_http_status_code() >= 500:
                return True
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return False


def bound_http_retries() -> None:
    """Cap MLflow's HTTP retries and timeout in this process (values the user set are kept)."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


@dataclass
class _Op:
    """A tracker operation waiting for the server: method name, arguments, and when it was asked for."""

    name: str
    args: tuple
    time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    in_doubt: bool = False  # a request was sent and failed: the server may have applied it


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


class SweepTracker:
    """Parent run + nested child runs of one sweep in one MLflow experiment (named after the sweep).

    The trial and end-of-sweep operations survive an MLflow outage by buffering (see the module docstring);
    set ``tolerant = False`` to have them raise instead (``--sync-mlflow`` does).
    """

    def __init__(self, tracking_uri: str, state_dir: str | Path, sweep_name: str) -> None:
        if tracking_uri.startswith(("http://", "https://")):
            bound_http_retries()
        self.tracking_uri = tracking_uri
        self.sweep_name = sweep_name
        self.state_path = Path(state_dir) / STATE_FILE
        self.client = MlflowClient(tracking_uri)
        self.tolerant = True
        self.retry_interval = RETRY_INTERVAL_S
        self._lock = threading.RLock()
        self._last_step: dict[str, int] = {}  # run id -> last epoch logged (loaded from MLflow on first use)
        self._status: dict[str, str] = {}
        self._pending: deque[_Op] = deque()
        self._next_retry = 0.0
        self._delivered = 0
        self._warned = False
        self._op_ms: int | None = None  # when the operation being run was asked for (metric timestamps)
        self._careful = False  # running an operation whose earlier attempt may have reached the server
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
            try:
                self.state["experiment_id"] = self._experiment()
                run_id = self.state.get("parent_run_id") or self._find_parent()
                if run_id is not None and not resume:
                    raise TrackingError(
                        f"MLflow already holds a sweep '{self.sweep_name}' (parent run {run_id} in "
                        f"{self.tracking_uri}); continue it with --resume or choose another --name"
                    )
                self.state["sessions"] = int(self.state.get("sessions", 0)) + 1
                if run_id is None:
                    run_id = self._create_parent(params, tags)
                else:
                    self.client.update_run(run_id, status="RUNNING")
                    stamp = f"dcml.resumed_at.{int(time.time())}"
                    self.log_tags(run_id, {stamp: tags.get("dcml.command", "")})
            except Exception as err:
                if is_outage(err):
                    raise TrackingError(
                        f"MLflow {self.tracking_uri} is unreachable ({_short(err)}); start the server and run "
                        "the command again"
                    ) from None
                raise
            self.state["parent_run_id"] = run_id
            self._save()
            return run_id

    def attach(self, params: dict[str, Any], tags: dict[str, str]) -> bool:
        """Find the experiment and parent run (created with ``params``/``tags`` if missing) without changing
        their state; True if the parent run had to be created."""
        with self._lock:
            self.state["experiment_id"] = self._experiment()
            run_id = self.state.get("parent_run_id") or self._find_parent()
            created = run_id is None
            if created:
                self.state["sessions"] = max(1, int(self.state.get("sessions", 0)))
                run_id = self._create_parent(params, tags)
            self.state["parent_run_id"] = run_id
            self._save()
            return created

    def finish_sweep(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        """Log the sweep summary on the parent run (step = driver session, 0 first) and end it.

        This is the driver's last MLflow call: pending operations get a last try, and if MLflow is still
        unreachable the command that completes MLflow from Ray's results is printed.
        """
        self._submit("finish_sweep", metrics, status)
        if not self.flush():
            print(self.sync_hint(), flush=True)

    def _finish_sweep(self, metrics: dict[str, float], status: str) -> None:
        step = int(self.state.get("sessions", 1)) - 1
        self._log_metrics(self.parent_run_id, {k: v for k, v in metrics.items() if _finite(v)}, step=step)
        self.client.set_terminated(self.parent_run_id, status=status)

    def _create_parent(self, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.sweep_name,
            tags={**tags, SWEEP_TAG: self.sweep_name, ROLE_TAG: "parent"},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

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
    ) -> str | None:
        """The trial's child run, created on first sight (with its configuration and extra ``tags``) and set
        RUNNING; None while MLflow is unreachable (the operation is buffered)."""
        return self._submit("start_trial", trial_id, trial_name, params, tags)

    def _start_trial(
        self, trial_id: str, trial_name: str, params: dict[str, Any], tags: dict[str, str] | None
    ) -> str:
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
        self.log_params(run_id, params)  # identical values may be logged again (e.g. after a crash)
        self._set_running(run_id)
        return run_id

    def log_result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Log one epoch's metrics with step = epoch; False if that epoch is logged (or buffered)."""
        return bool(self._submit("log_result", trial_id, metrics_of(result)))  # (buffered: only these)

    def _log_result(self, trial_id: str, result: dict[str, Any]) -> bool:
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
        self._submit("end_trial", trial_id, status, dict(tags), dict(final or {}))

    def _end_trial(self, trial_id: str, status: str, tags: dict[str, str], final: dict[str, float]) -> None:
        run_id = self.run_id(trial_id)
        if run_id is None or self.status(run_id) in _TERMINAL:
            return
        if final:
            self._log_metrics(run_id, {k: v for k, v in final.items() if _finite(v)}, self.last_step(run_id))
        self.log_tags(run_id, tags)
        self.client.set_terminated(run_id, status=status)
        self._status[run_id] = status

    def log_checkpoint(self, trial_id: str, directory: str | Path, artifact_path: str = "checkpoint") -> None:
        """Upload a checkpoint directory as artifacts of the trial's run."""
        self._submit("log_checkpoint", trial_id, str(directory), artifact_path)

    def _log_checkpoint(self, trial_id: str, directory: str, artifact_path: str) -> None:
        run_id = self.run_id(trial_id)
        if run_id is None:
            return
        if not Path(directory).is_dir():  # a buffered upload whose temporary copy is gone
            print(
                f"warning: checkpoint {directory} of trial {trial_id} is gone; not uploaded", file=sys.stderr
            )
            return
        self.client.log_artifacts(run_id, directory, artifact_path=artifact_path)

    def close_unfinished(self, status: str = "KILLED") -> list[str]:
        """Set every trial run of this sweep still RUNNING to ``status``; returns their ids ([] if buffered)."""
        return self._submit("close_unfinished", status) or []

    def _close_unfinished(self, status: str) -> list[str]:
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
            self._last_step[run_id] = max(self.logged_steps(run_id, EPOCH), default=0)
        return self._last_step[run_id]

    def logged_steps(self, run_id: str, key: str) -> list[int]:
        """The steps at which MLflow holds metric ``key`` of a run (a step twice if logged twice)."""
        return [m.step for m in self.client.get_metric_history(run_id, key)]

    # ------------------------------------------------------------------ outages
    @property
    def pending(self) -> int:
        """Number of operations waiting for MLflow."""
        return len(self._pending)

    def flush(self, force: bool = True) -> bool:
        """Deliver the pending operations in order; True when none is left.

        Without ``force`` this tries at most once per ``retry_interval`` seconds (the callback calls it on every
        Tune event); a server URI is probed at ``/health`` first, which fails fast while it is down.
        """
        with self._lock:
            if not self._pending:
                return True
            if not force and time.monotonic() < self._next_retry:
                return False
            self._next_retry = time.monotonic() + self.retry_interval
            if not self._reachable():
                return False
            while self._pending:
                op = self._pending[0]
                try:
                    self._run(op)
                except Exception as err:  # noqa: BLE001 - an outage waits; anything else is reported
                    if is_outage(err):
                        op.in_doubt = True
                        return False
                    print(
                        f"warning: MLflow {self.tracking_uri}: buffered {op.name} failed and is dropped "
                        f"({_short(err)})",
                        file=sys.stderr,
                        flush=True,
                    )
                self._pending.popleft()
                self._delivered += 1
            print(
                f"MLflow {self.tracking_uri} reachable again: delivered {self._delivered} buffered "
                "operation(s)",
                flush=True,
            )
            self._delivered, self._warned = 0, False
            return True

    def sync_hint(self) -> str:
        """What is still pending, and the command that completes MLflow from Ray's results."""
        try:
            saved = json.loads((self.state_path.parent / "sweep.json").read_text())
        except (OSError, ValueError):
            saved = {}
        flags = [f"--space {saved['space']}"] if saved.get("space") else []
        flags.append(f"--name {self.sweep_name}")
        if saved.get("storage"):
            flags.append(f"--storage {saved['storage']}")
        return (
            f"MLflow {self.tracking_uri} is still unreachable: {self.pending} operation(s) not logged; Ray's "
            f"results hold them. Once the server is back, run: python tune/run.py {' '.join(flags)} --sync-mlflow"
        )

    def _submit(self, name: str, *args: Any) -> Any:
        """Run an operation now, or buffer it (in order) while MLflow is unreachable."""
        with self._lock:
            if not self.tolerant:
                return getattr(self, f"_{name}")(*args)
            self.flush(force=False)
            op = _Op(name, args)
            if self._pending:
                self._pending.append(op)
                return None
            try:
                return self._run(op)
            except Exception as err:
                if not is_outage(err):
                    raise
                op.in_doubt = True
                self._pending.append(op)
                self._next_retry = time.monotonic() + self.retry_interval
                if not self._warned:
                    self._warned = True
                    print(
                        f"MLflow {self.tracking_uri} unreachable: buffering; will retry ({_short(err)})",
                        file=sys.stderr,
                        flush=True,
                    )
                return None

    def _run(self, op: _Op) -> Any:
        self._op_ms, self._careful = op.time_ms, op.in_doubt
        if op.in_doubt:  # what the failed attempt may have changed is read again from MLflow
            self._status.clear()
            self._last_step.clear()
        try:
            return getattr(self, f"_{op.name}")(*op.args)
        finally:
            self._op_ms, self._careful = None, False

    def _reachable(self) -> bool:
        if not self.tracking_uri.startswith(("http://", "https://")):
            return True
        try:
            with urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=2):  # noqa: S310
                return True
        except urllib.error.HTTPError as err:  # answering, e.g. 401 behind auth: let the real call decide
            return err.code < 500
        except OSError:
            return False

    # ------------------------------------------------------------------ helpers
    def _set_running(self, run_id: str) -> None:
        if self.status(run_id) != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
            self._status[run_id] = "RUNNING"

    def _search(self, filter_string: str) -> list:
        return list(
            self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1000)
        )

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log params (lists and dicts as JSON), in batches of MLflow's maximum size."""
        items = [Param(k, _param_value(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[i : i + _BATCH])

    def log_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a run, in batches of MLflow's maximum size."""
        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, tags=items[i : i + _BATCH])

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        if self._careful:  # the failed attempt may have written some of these: log only what MLflow lacks
            metrics = {k: v for k, v in metrics.items() if step not in self.logged_steps(run_id, k)}
        now = self._op_ms or int(time.time() * 1000)
        self.log_metric_batch(run_id, [Metric(k, v, now, step) for k, v in metrics.items()])

    def log_metric_batch(self, run_id: str, metrics: list[Metric]) -> None:
        """Log metrics as they are (key, value, timestamp, step), in batches of MLflow's maximum size."""
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
