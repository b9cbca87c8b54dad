"""One tidy table per sweep joining its three records: Ray's trial, Optuna's trial and its state, MLflow's run.

* MLflow: one run per trial, tagged with the Ray trial id (``ray.trial_id``); its metrics give the epochs run
  and the best validation and test metrics (:func:`analysis.trials.trial_table`), its ``checkpoint`` artifact the
  best checkpoint of the best trials (:mod:`analysis.checkpoints`).
* Optuna: the sweep's study, stored by the searcher in ``<storage>/<sweep>/sweep_state/optuna.db`` (found from
  the parent run's ``storage`` and ``name`` parameters, or given). Each Optuna trial names its Ray trial in the
  user attribute ``ray_trial_id``; studies from before that attribute are joined on the sampled values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from analysis.checkpoints import CHECKPOINT_ARTIFACT, checkpoint_uris, local_artifacts
from analysis.mlflow_io import SweepData
from analysis.tables import varying_params
from dcml_core.tracking import OPTUNA_DB, RAY_TRIAL_ATTR, STATE_SUBDIR

IDENTITY = ["ray_trial_id", "optuna_trial", "optuna_state", "mlflow_run_id", "run_name", "mlflow_status"]


def sweep_state_dir(sweep: SweepData, state_dir: str | Path | None = None) -> Path | None:
    """Folder of the sweep's ``optuna.db``: ``state_dir`` if given, else ``<storage>/<name>/sweep_state`` from
    the parent run's parameters (None for a remote storage or a run without a parent)."""
    if state_dir is not None:
        return Path(state_dir)
    params = sweep.parent.get("params", {})
    storage = params.get("storage")
    if not storage or ("://" in storage and not storage.startswith("file://")):
        return None
    return Path(storage.removeprefix("file://")) / params.get("name", sweep.name) / STATE_SUBDIR


def load_study(sweep: SweepData, state_dir: str | Path | None = None) -> optuna.Study | None:
    """The sweep's stored Optuna study, or None when the sweep did not use Optuna (or its folder is gone).

    A ``state_dir`` given explicitly must hold ``optuna.db`` (FileNotFoundError otherwise).
    """
    folder = sweep_state_dir(sweep, state_dir)
    if folder is None or not (folder / OPTUNA_DB).is_file():
        if state_dir is not None:
            raise FileNotFoundError(f"no {OPTUNA_DB} in {folder}; pass the sweep's sweep_state folder")
        return None
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / OPTUNA_DB).resolve()}")
    names = optuna.study.get_all_study_names(storage)
    name = sweep.name if sweep.name in names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise ValueError(f"{folder / OPTUNA_DB} holds no study named '{sweep.name}' (studies: {names})")
    return optuna.load_study(study_name=name, storage=storage)


def study_trials(study: optuna.Study) -> pd.DataFrame:
    """Optuna's own trial table: ``optuna_trial, optuna_state, optuna_value, ray_trial_id``, then the
    parameters with dotted names (``model.compos_num``)."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    if frame.empty:  # a study that never asked for a trial
        return pd.DataFrame(columns=["optuna_trial", "optuna_state", "optuna_value", "ray_trial_id"])
    renames = {"number": "optuna_trial", "state": "optuna_state", "value": "optuna_value"}
    renames.update(
        {c: c[len("params_") :].replace("/", ".") for c in frame.columns if c.startswith("params_")}
    )
    frame = frame.rename(columns={**renames, f"user_attrs_{RAY_TRIAL_ATTR}": "ray_trial_id"})
    if "ray_trial_id" not in frame.columns:
        frame["ray_trial_id"] = None
    return frame[[c for c in frame.columns if not c.startswith("user_attrs_")]]


def sampled_params(sweep: SweepData) -> list[str]:
    """The sampled configuration keys: the parent run's ``sampled_params``, else the parameters that vary."""
    listed = sweep.parent.get("params", {}).get("sampled_params")
    if listed:
        return [p for p in listed.split(",") if p in sweep.trials.columns]
    return varying_params(sweep.trials)


def joined_table(
    sweep: SweepData, study: optuna.Study | None = None, checkpoints: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per trial (outer join: a trial missing from one record still gets its row).

    Columns: ``ray_trial_id, optuna_trial, optuna_state`` (COMPLETE / PRUNED / FAIL / RUNNING; empty without a
    study), ``mlflow_run_id, run_name, mlflow_status, stopped_early``, the sampled configuration (dotted keys),
    ``epochs_run, best_epoch``, the primary evaltype's ``best_val/*`` and ``sel_test/*`` (test at the
    validation-selected epoch), ``sel_test_epoch`` and ``checkpoint`` (the best checkpoint logged in MLflow: a
    local path, or a ``runs:/`` URI for a remote store; empty for trials without one). Ordered by Optuna trial
    number, then MLflow start time.
    """
    trials = sweep.trials
    params = sampled_params(sweep)
    metrics = [c for c in trials.columns if c.startswith(("best_val/", "sel_test/")) and c.count("/") == 1]
    wanted = [
        "trial_id",
        "run_id",
        "run_name",
        "status",
        "stopped_early",
        *params,
        "epochs_run",
        "best_epoch",
    ]
    runs = trials[[*wanted, *metrics, "sel_test_epoch"]].rename(
        columns={"trial_id": "ray_trial_id", "run_id": "mlflow_run_id", "status": "mlflow_status"}
    )
    runs["_started"] = range(len(runs))  # the trial table is ordered by start time
    uris = checkpoint_uris(sweep) if checkpoints is None else checkpoints
    runs["checkpoint"] = runs["mlflow_run_id"].map(lambda r: _checkpoint_path(sweep, r, uris.get(r)))
    if study is None:
        out = runs.assign(optuna_trial=np.nan, optuna_state=None)
    else:
        optuna_rows = _attach_ray_ids(study_trials(study), runs, params)
        keep = ["ray_trial_id", "optuna_trial", "optuna_state"]
        out = runs.merge(optuna_rows[keep], on="ray_trial_id", how="outer")
        missing = out["mlflow_run_id"].isna()  # Optuna trials MLflow never heard of: their sampled values
        if missing.any():
            values = optuna_rows.set_index("optuna_trial")
            for p in params:
                if p in values.columns:
                    out.loc[missing, p] = out.loc[missing, "optuna_trial"].map(values[p])
    out["optuna_trial"] = out["optuna_trial"].astype("Int64")
    out = out.sort_values(["optuna_trial", "_started"], na_position="last", kind="stable")
    columns = [*IDENTITY, "stopped_early", *params, "epochs_run", "best_epoch", *metrics, "sel_test_epoch"]
    return out[[*columns, "checkpoint"]].reset_index(drop=True)


def _checkpoint_path(sweep: SweepData, run_id: str, uri: str | None) -> str | None:
    if uri is None:
        return None
    runs = sweep.runs.set_index("run_id")
    base = runs.at[run_id, "artifact_uri"] if "artifact_uri" in runs.columns else None
    local = local_artifacts(base)
    return uri if local is None else str(local / CHECKPOINT_ARTIFACT)


def _attach_ray_ids(optuna_rows: pd.DataFrame, runs: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """Optuna trials without the ``ray_trial_id`` attribute get the Ray id of the one MLflow run whose sampled
    values equal theirs (older sweeps); ambiguous or unmatched ones keep None."""
    optuna_rows = optuna_rows.copy()
    todo = optuna_rows["ray_trial_id"].isna()
    if not todo.any():
        return optuna_rows
    free = runs[~runs["ray_trial_id"].isin(optuna_rows["ray_trial_id"].dropna())]
    for idx in optuna_rows.index[todo]:
        row = optuna_rows.loc[idx]
        keys = [p for p in params if p in optuna_rows.columns]
        hits = [r for _, r in free.iterrows() if keys and all(_same(r[p], row[p]) for p in keys)]
        if len(hits) == 1:
            optuna_rows.at[idx, "ray_trial_id"] = hits[0]["ray_trial_id"]
    return optuna_rows


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)
