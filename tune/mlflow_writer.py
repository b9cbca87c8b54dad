"""The only MLflow writer of a sweep: one experiment, a parent run, one nested child run per trial.

Every write is idempotent, so resumes, outages and ``--sync-mlflow`` need no bookkeeping: a run is found by its
tags before one is created and gets only the parameters it lacks; metrics go per epoch (step = epoch), only past
the last epoch the run holds (its latest ``epoch``, sent last in each batch); each value carries the time of its
Ray result, so a batch re-sent after a lost answer is identical and MLflow's SQL store keeps it once; a run is
ended only while it is not (KILLED, an interrupted driver's mark, gives way to a real end). While the server is
down, the :class:`~tune.trial_run.TrialLog` of each trial waits in :attr:`SweepWriter.pending` and is written
when it answers again (tried every ``retry_interval`` s at most, and at the end).
"""

from __future__ import annotations

import collections
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from dcml_core import tracking as tr
from dcml_core.metric_names import EPOCH
from tune.trial_run import TrialLog, finite, trial_run

TERMINAL = ("FINISHED", "FAILED", "KILLED")
RESUMED_TAG = "dcml.resumed_at."  # + time: one per resumed driver session, on the parent run
# MLflow's own HTTP retries take minutes per call: one quick retry rides out a dropped connection, longer
# outages are the pending logs' job. A refused connection fails at once, a hanging server after 2 x 10 s.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip


def is_outage(err: BaseException) -> bool:
    """True when ``err`` means the server is unreachable or failing (retry later), not a bad request."""
    while err is not None:
        if isinstance(err, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        if isinstance(err, MlflowException) and (  # transport failures are wrapped as "API request to ..."
            str(err.message).startswith("API request to") or err.get_http_status_code() >= 500
        ):
            return True
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return False


@dataclass
class RunState:
    """What the writer knows of a trial's run (``params``: those a found run holds, until it has them all)."""

    run_id: str
    status: str
    last_step: int
    params: set[str] | None = None


class SweepWriter:
    """Parent run + nested child runs of one sweep in one MLflow experiment named after the sweep. ``sampled``:
    the sampled parameters (run names, ``dcml.sampled``); ``repeat_of``: the sweep a seed-repeat sweep repeats;
    ``baseline``: the space's published configuration; ``counts``: what :meth:`write` did (runs created and
    ended, metric values present and added)."""

    def __init__(
        self, tracking_uri: str, sweep: str, sampled: tuple = (), repeat_of: str | None = None, baseline=None
    ):
        if tr.is_remote(tracking_uri):
            for key, value in HTTP_LIMITS.items():  # values the user set are kept
                os.environ.setdefault(key, value)
        self.tracking_uri, self.sweep, self.sampled, self.repeat_of = tracking_uri, sweep, sampled, repeat_of
        self.baseline = dict(baseline or {})  # the space's published configuration (``dcml.baseline`` runs)
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = self.parent_run_id = ""
        self.session = 0  # driver sessions before this one (the step of the parent's summary metrics)
        self.runs: dict[str, RunState] = {}  # trial id -> its run, as far as known
        self.pending: dict[str, TrialLog] = {}  # trial id -> what waits to be written
        self.counts: collections.Counter = collections.Counter()
        self.checkpoints_uploaded: set[str] = set()  # trial ids whose best checkpoint is in their run
        self.retry_interval, self._next_retry, self._down, self._recovered = 10.0, 0.0, False, 0

    # ------------------------------------------------------------------ the sweep (parent run)
    def open(self, params: dict[str, Any], tags: dict[str, str], resume=False, attach=False) -> bool:
        """Find or create the experiment and the parent run; True if the parent was created. A new sweep
        refuses an existing one; ``resume`` sets it RUNNING and tags the session; ``attach`` leaves it as is."""
        try:
            self.experiment_id = tr.open_experiment(self.client, self.sweep)
            tr.set_trials_view(self.client, self.experiment_id, self.sampled)
            found = self._search(f"tags.`{tr.ROLE_TAG}` = '{tr.PARENT_ROLE}'")
            if found and not (resume or attach):
                raise tr.TrackingError(
                    f"MLflow already holds a sweep '{self.sweep}' (parent run {found[0].info.run_id} in "
                    f"{self.tracking_uri}); continue it with --resume or choose another --name"
                )
            if found:
                self.parent_run_id = found[0].info.run_id
                self.session = sum(key.startswith(RESUMED_TAG) for key in found[0].data.tags) + resume
                if resume:
                    self.client.update_run(self.parent_run_id, status="RUNNING")
                    stamp, command = f"{RESUMED_TAG}{int(time.time())}", tags.get("dcml.command", "")
                    self.client.set_tag(self.parent_run_id, stamp, command)
            else:
                run = self.client.create_run(self.experiment_id, run_name=self.sweep, tags={
                    **tags, tr.SWEEP_TAG: self.sweep, tr.ROLE_TAG: tr.PARENT_ROLE})  # fmt: skip
                self.parent_run_id = run.info.run_id
                self._log_params(self.parent_run_id, params)
            for run in self._search(f"tags.`{tr.ROLE_TAG}` = '{tr.TRIAL_ROLE}'"):
                self.runs[run.data.tags.get(tr.TRIAL_TAG, "")] = _state(run)
        except Exception as err:
            if is_outage(err):
                raise tr.TrackingError(f"MLflow {self.tracking_uri} is unreachable ({_short(err)})") from None
            raise
        return not found

    def finish(self, metrics: dict[str, float], status: str = "FINISHED", time_ms: int = 0) -> list[str]:
        """End the sweep: trial runs still RUNNING (their trials did not end: an interrupted driver) become
        KILLED, the summary metrics go on the parent run (step = driver session), then its status. Returns the
        runs set KILLED."""
        running = self._search(f"tags.`{tr.ROLE_TAG}` = '{tr.TRIAL_ROLE}' and attributes.status = 'RUNNING'")
        for run in running:
            self.client.set_terminated(run.info.run_id, status="KILLED")
            self.runs.pop(run.data.tags.get(tr.TRIAL_TAG, ""), None)
        stamp = time_ms or int(time.time() * 1000)
        values = [Metric(k, float(v), stamp, self.session) for k, v in metrics.items() if finite(v)]
        self.client.log_batch(self.parent_run_id, metrics=values)
        self.client.set_terminated(self.parent_run_id, status=status)
        return [run.info.run_id for run in running]

    # ------------------------------------------------------------------ trials (child runs)
    def find(self, trial_id: str) -> RunState | None:
        """The trial's run, if MLflow holds one."""
        if trial_id not in self.runs:
            for run in self._search(f"tags.`{tr.TRIAL_TAG}` = '{trial_id}'")[:1]:
                self.runs[trial_id] = _state(run)
        return self.runs.get(trial_id)

    def write(self, log: TrialLog) -> None:
        """Make the trial's run hold what ``log`` holds (see the module docstring); empties the log."""
        try:
            run = self.find(log.trial_id) or self._create(log)
            if run.params is not None:  # found, not created: log the parameters it lacks (a creation cut short)
                params = self._trial_run(log)[1]
                self._log_params(run.run_id, {k: v for k, v in params.items() if k not in run.params})
                run.params = None
            if log.epochs and log.end is None and run.status != "RUNNING":  # a resumed trial reports again
                self.client.update_run(run.run_id, status="RUNNING")
                run.status = "RUNNING"
            for step, ms, values in log.epochs:
                self.counts["added" if step > run.last_step else "present"] += len(values)
                if step > run.last_step:  # "epoch" last: a run holding it holds the whole batch
                    ordered = sorted(values.items(), key=lambda kv: kv[0] == EPOCH)
                    self.client.log_batch(run.run_id, metrics=[Metric(k, v, ms, step) for k, v in ordered])
                    run.last_step = step
            log.epochs.clear()
            if log.tags:  # the trial's device and faiss build (the same values every time: idempotent)
                self.client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in log.tags.items()])
                log.tags.clear()
            status, tags, final, ms = log.end or ("", {}, {}, 0)
            if status and (run.status not in TERMINAL or (run.status == "KILLED" and status != "KILLED")):
                metrics = [Metric(k, v, ms, run.last_step) for k, v in final.items()]
                self.client.log_batch(run.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
                self.client.set_terminated(run.run_id, status=status)
                run.status = status
                self.counts.update({"ended": 1, "added": len(final)})
            else:
                self.counts["present"] += len(final)
            if log.checkpoint and Path(log.checkpoint).is_dir():
                self.client.log_artifacts(run.run_id, log.checkpoint, artifact_path="checkpoint")
                self.checkpoints_uploaded.add(log.trial_id)
            elif log.checkpoint:  # kept through an outage, and its temporary copy is gone
                print(f"warning: checkpoint {log.checkpoint} is gone; not uploaded", file=sys.stderr)
            log.checkpoint = None
        except Exception:
            self.runs.pop(log.trial_id, None)  # what the failed call changed is read again next time
            raise

    def _create(self, log: TrialLog) -> RunState:
        name, params, tags = self._trial_run(log)
        tags = {**tr.system_tags(), **tags, tr.PARENT_RUN_TAG: self.parent_run_id}
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        self.runs[log.trial_id] = RunState(run_id, "RUNNING", -1)  # epoch 0 (the starting network) is a step
        self._log_params(run_id, params)
        self.counts["created"] += 1
        return self.runs[log.trial_id]

    def _trial_run(self, log: TrialLog) -> tuple[str, dict[str, Any], dict[str, str]]:
        return trial_run(log.config, log.trial_id, self.sweep, self.sampled, self.repeat_of, self.baseline)

    # ------------------------------------------------------------------ outages
    def submit(self, log: TrialLog) -> None:
        """Write ``log`` now, or keep it for later while MLflow is unreachable."""
        self.pending[log.trial_id] = log
        self.flush(force=False)

    def flush(self, force: bool = True) -> bool:
        """Write the pending logs; True when none is left. While MLflow is down: at most once per
        ``retry_interval`` seconds unless ``force``, and a server is probed at ``/health`` first (fails fast)."""
        if not self.pending or self._down and not force and time.monotonic() < self._next_retry:
            return not self.pending
        if self._down and tr.is_remote(self.tracking_uri) and tr.server_problem(self.tracking_uri, 2.0):
            self._next_retry = time.monotonic() + self.retry_interval
            return False
        for trial_id in list(self.pending):
            try:
                self.write(self.pending[trial_id])
            except Exception as err:
                if not is_outage(err):
                    raise
                if not self._down:
                    say = f"MLflow {self.tracking_uri} unreachable: buffering; will retry ({_short(err)})"
                    print(say, file=sys.stderr, flush=True)
                self._down, self._next_retry = True, time.monotonic() + self.retry_interval
                return False
            del self.pending[trial_id]
            self._recovered += self._down
        if self._down:
            n, self._down, self._recovered = self._recovered, False, 0
            print(f"MLflow {self.tracking_uri} reachable again: delivered the buffered updates of {n} trial(s)")
        return True

    # ------------------------------------------------------------------ helpers
    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.client.log_batch(run_id, params=[Param(k, tr.param_text(v)) for k, v in sorted(params.items())])

    def _search(self, filter_string: str) -> list:
        query = f"tags.`{tr.SWEEP_TAG}` = '{self.sweep}' and {filter_string}"
        return list(self.client.search_runs([self.experiment_id], filter_string=query, max_results=50000))


def _state(run: Any) -> RunState:
    return RunState(run.info.run_id, run.info.status, int(run.data.metrics.get(EPOCH, -1)), set(run.data.params))


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
