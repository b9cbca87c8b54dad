"""Read sweeps (and single runs) from any MLflow tracking URI into tidy pandas DataFrames.

Layout read (written by ``tune/mlflow_writer.py`` and ``dcml_core/run_logger.py``): one experiment per sweep,
a parent run tagged ``dcml.role=parent``, one child run per trial; every run that is not a parent counts as a
trial, so experiments of ``python -m dcml_core.train`` runs load too. Metrics are logged with step = epoch.
Only MlflowClient calls are used (no global ``mlflow.set_tracking_uri``): several stores can be read at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType

from analysis.trials import PARENT_ROLE, ROLE_TAG, trial_table
from dcml_core.metric_names import OBJECTIVE
from dcml_core.tracking import DEFAULT_DB_NAME, resolve_tracking_uri

# Per-step copies of values derived from the curves (the trainable's running best); recomputed here instead.
SUMMARY_PREFIXES = ("best/", "final/")
CURVE_COLUMNS = ["run_id", "key", "step", "value", "timestamp"]


class ExperimentNotFoundError(LookupError):
    """No active MLflow experiment of that name; the message lists the available ones."""


class EmptyExperimentError(LookupError):
    """The experiment exists but holds no trial runs."""


@dataclass(frozen=True)
class SweepData:
    """Everything the analysis needs about one experiment (sweep)."""

    name: str
    tracking_uri: str
    experiment_id: str
    parent: dict[str, Any]  # {"run_id", "params", "tags"} of the sweep's parent run; {} without one
    runs: pd.DataFrame  # one row per run (parents included), mlflow.search_runs-style columns
    curves: pd.DataFrame  # long: run_id, key, step, value, timestamp (trial runs only)
    trials: pd.DataFrame = field(repr=False)  # one row per trial: analysis.trials.trial_table

    @property
    def repeat_of(self) -> str | None:
        """Name of the sweep this one repeats over seeds (tag ``dcml.repeat_of``), else None."""
        return self.parent.get("tags", {}).get("dcml.repeat_of") or _single(self.trials, "repeat_of")


def client_for(tracking_uri: str | None = None) -> tuple[MlflowClient, str]:
    """An MlflowClient and the resolved URI (``$MLFLOW_TRACKING_URI`` or ``./mlflow.db`` when None).

    A plain path may name the database file or its folder. A SQLite database that does not exist raises
    FileNotFoundError (reading must not create an empty store).
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if uri and "://" not in uri and not uri.startswith("sqlite:"):
        path = Path(uri).expanduser().resolve()
        uri = f"sqlite:///{path / DEFAULT_DB_NAME if path.is_dir() else path}"
    uri = resolve_tracking_uri(uri or None)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise FileNotFoundError(
            f"no MLflow database at {uri[len('sqlite:///') :]}; pass --tracking-uri sqlite:///PATH/mlflow.db "
            "(or the folder that holds it, or an http:// server)"
        )
    return MlflowClient(uri), uri


def list_experiments(tracking_uri: str | None = None) -> list[str]:
    """Names of the active experiments of a store, sorted."""
    client, _ = client_for(tracking_uri)
    return sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))


def latest_experiment(tracking_uri: str | None = None) -> str:
    """Name of the most recently created active experiment that holds trial runs (``Default`` left out)."""
    return latest_experiments(tracking_uri, 1)[0]


def latest_experiments(tracking_uri: str | None = None, n: int = 1) -> list[str]:
    """Names of the ``n`` most recently created active experiments that hold trial runs, newest first.

    An experiment with only a sweep's parent run (a sweep that has not started a trial) is skipped; fewer than
    ``n`` names come back when the store has fewer; ExperimentNotFoundError when it has none.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of experiments, got {n}")
    client, uri = client_for(tracking_uri)
    exps = [e for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY) if e.name != "Default"]
    names = []
    for exp in sorted(exps, key=lambda e: e.creation_time or 0, reverse=True):
        runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=2)
        if len(runs) == 2 or (
            runs and runs[0].data.tags.get(ROLE_TAG) != PARENT_ROLE
        ):  # one parent per sweep
            names.append(exp.name)
        if len(names) == n:
            break
    if not names:
        raise ExperimentNotFoundError(
            f"no experiment with trial runs in {uri}; run a sweep first (python tune/run.py --space demo)"
        )
    return names


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of an active experiment; ExperimentNotFoundError listing the available names otherwise."""
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        state = "is deleted" if exp is not None else "does not exist"
        raise ExperimentNotFoundError(
            f"MLflow experiment '{name}' {state} in {client.tracking_uri}; available: {names or 'none'}"
        )
    return exp.experiment_id


def load_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """All active runs of an experiment: ``run_id, run_name, status, start_time, end_time, artifact_uri,
    params.*, metrics.*`` (latest values), ``tags.*`` — the columns of ``mlflow.search_runs``."""
    client, _ = client_for(tracking_uri)
    return runs_frame(_search(client, experiment_id(client, experiment)))


def load_curves(
    experiment: str,
    tracking_uri: str | None = None,
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-epoch curves of the trial runs, long format (``run_id, key, step, value, timestamp``)."""
    return load_sweep(experiment, tracking_uri, keys=keys).curves


def load_trials(experiment: str, tracking_uri: str | None = None, objective: str = OBJECTIVE) -> pd.DataFrame:
    """One row per trial (see :func:`analysis.trials.trial_table` for the columns)."""
    return load_sweep(experiment, tracking_uri, objective=objective).trials


def load_sweep(
    experiment: str,
    tracking_uri: str | None = None,
    keys: Sequence[str] | None = None,
    objective: str = OBJECTIVE,
    mode: str = "max",
) -> SweepData:
    """Runs, curves and the trial table of one experiment.

    Args:
        keys: metric histories to fetch (the objective's is always fetched); None fetches every metric
            except ``best/*`` and ``final/*``. A short list ranks faster; times then fall back to wall times.
    """
    client, uri = client_for(tracking_uri)
    exp_id = experiment_id(client, experiment)
    runs = runs_frame(_search(client, exp_id))
    is_parent = _tag(runs, ROLE_TAG) == PARENT_ROLE
    if runs.empty or is_parent.all():
        raise EmptyExperimentError(
            f"MLflow experiment '{experiment}' in {uri} has no trial runs yet"
            + (" (only the sweep's parent run)" if len(runs) else "")
        )
    keys = None if keys is None else [*keys, objective]  # the selection needs the objective's curve
    wanted = _metric_keys(runs[~is_parent], keys)
    curves = fetch_curves(client, wanted, remote=uri.startswith(("http:", "https:")))
    parent = _parent(runs[is_parent])
    trials = trial_table(runs, curves, objective=objective, mode=mode, sweep=experiment)
    return SweepData(experiment, uri, exp_id, parent, runs, curves, trials)


def runs_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """MLflow Run objects -> DataFrame with the columns of ``mlflow.search_runs``."""
    rows = []
    for run in runs:
        info, data = run.info, run.data
        row = {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "experiment_id": info.experiment_id,
            "status": info.status,
            "start_time": _time(info.start_time),
            "end_time": _time(info.end_time),
            "artifact_uri": info.artifact_uri,
        }
        row.update({f"params.{k}": v for k, v in data.params.items()})
        row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in data.tags.items()})
        rows.append(row)
    columns = ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "artifact_uri"]
    return pd.DataFrame(rows, columns=None if rows else columns)


def fetch_curves(client: MlflowClient, wanted: dict[str, list[str]], remote: bool = False) -> pd.DataFrame:
    """Metric histories ``{run_id: [key, ...]}`` as one long DataFrame (threads for an HTTP server)."""
    jobs = [(run_id, key) for run_id, keys in wanted.items() for key in keys]

    def history(job: tuple[str, str]) -> list[tuple[str, str, int, float, int]]:
        run_id, key = job
        return [(run_id, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]

    if remote and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=8) as pool:
            parts = list(pool.map(history, jobs))
    else:
        parts = [history(job) for job in jobs]
    rows = [row for part in parts for row in part]
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    frame["step"] = frame["step"].astype(int)
    return frame.sort_values(["run_id", "key", "step", "timestamp"], ignore_index=True)


def _search(client: MlflowClient, exp_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _metric_keys(runs: pd.DataFrame, keys: Sequence[str] | None) -> dict[str, list[str]]:
    metric_cols = [c for c in runs.columns if c.startswith("metrics.")]
    out = {}
    for _, row in runs.iterrows():
        logged = [c[len("metrics.") :] for c in metric_cols if pd.notna(row[c])]
        if keys is None:
            out[row["run_id"]] = [k for k in logged if not k.startswith(SUMMARY_PREFIXES)]
        else:
            out[row["run_id"]] = [k for k in logged if k in keys]
    return out


def _parent(parents: pd.DataFrame) -> dict[str, Any]:
    if parents.empty:
        return {}
    row = parents.sort_values("start_time").iloc[0]
    return {"run_id": row["run_id"], "params": _prefixed(row, "params."), "tags": _prefixed(row, "tags.")}


def _prefixed(row: pd.Series, prefix: str) -> dict[str, Any]:
    return {c[len(prefix) :]: v for c, v in row.items() if c.startswith(prefix) and pd.notna(v)}


def _tag(runs: pd.DataFrame, tag: str) -> pd.Series:
    col = f"tags.{tag}"
    return runs[col] if col in runs.columns else pd.Series([None] * len(runs), index=runs.index, dtype=object)


def _single(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].dropna().unique() if column in frame.columns else []
    return values[0] if len(values) == 1 else None


def _time(ms: int | None) -> pd.Timestamp | None:
    return pd.Timestamp(ms, unit="ms", tz="UTC") if ms else None
