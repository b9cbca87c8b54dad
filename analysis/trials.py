"""One row per trial from MLflow runs and their curves: configuration, selected metrics, epochs, time, cost.

Selection rules (all on the curves logged with step = epoch; step 0 is the starting network, evaluated before
the first training step: its metrics are ``start_val/*`` and ``start_test/*``, and it is never selected):

* ``best_epoch``: the first epoch at which the validation objective reaches its best value (ties keep the
  earlier epoch, as the trainable's strict ``>``); ``best_val/*`` are the validation metrics of that epoch;
* ``final_val/*``: the value of each validation metric at the last epoch it was logged;
* ``sel_test/*``: test metrics at the validation-selected epoch: those logged at ``best_epoch``, or, when the
  test split was not evaluated there, the latest test evaluation before it (``sel_test_epoch`` says which;
  NaN when there is none). Sweeps evaluate test exactly when validation improves, so the two coincide;
* ``oracle_test/*``: the original projects' convention (algorithms.md §5): test metrics at the epoch with the
  best *test* value of the objective (``oracle_test_epoch``) **among the epochs where test was evaluated**
  (``test_epochs`` counts them). Sweeps evaluate test only when validation improves (or every
  ``eval.test_every`` epochs; set it to 1 to evaluate test at every epoch), so unless ``test_epochs`` equals
  ``epochs_run`` this is not the best test epoch of the run. It selects on the test set, so it is optimistic;
  use it only to compare with published numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.params import canonical_flat, config_fields, config_id, display_value
from dcml_core.metric_names import OBJECTIVE
from dcml_core.tracking import (  # the tags the writers set (defined once there)
    BASELINE_TAG,
    COLLAPSED_TAG,
    CONFIG_TAG,
    ERROR_TAG,
    PARENT_ROLE,
    REPEAT_TAG,
    ROLE_TAG,
    STOPPED_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
)

TIME_SUFFIX = "eval_time_s"
START_STEP = 0  # the step of the starting network's evaluation
SELECTIONS = {"val": "sel_test/", "oracle": "oracle_test/"}  # table conventions -> column prefixes


def trial_table(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    objective: str = OBJECTIVE,
    mode: str = "max",
    sweep: str | None = None,
) -> pd.DataFrame:
    """One row per non-parent run, ordered by start time.

    Columns: ``run_id, run_name, trial_id, sweep, status, error, start_time, end_time, config_id, repeat_of,
    baseline`` (the space's published configuration), ``collapsed_epoch`` (NaN unless its embeddings collapsed),
    ``seed, objective`` (best validation objective), ``best_epoch, epochs_run, n_epochs, stopped_early,
    wall_time_s`` (run end - start), ``compute_s`` (sum of the logged per-epoch train + eval seconds; the wall
    time when none were logged), ``device_hours, device_unit``, the flat configuration keys
    (``model.compos_num``, ...; lists as ``a,b``), then ``start_val/*, start_test/*`` (the starting network),
    ``best_val/*, final_val/*, sel_test/*, oracle_test/*``
    and ``final_epoch, sel_test_epoch, oracle_test_epoch, test_epochs`` (epochs with a test evaluation).
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    roles = (
        runs[f"tags.{ROLE_TAG}"] if f"tags.{ROLE_TAG}" in runs.columns else pd.Series(None, index=runs.index)
    )
    parents = runs[roles == PARENT_ROLE]
    devices = {row["run_id"]: _params(row) for _, row in parents.iterrows()}
    by_run = {run_id: part for run_id, part in curves.groupby("run_id")}
    rows = []
    for _, run in runs[roles != PARENT_ROLE].iterrows():
        parent_params = devices.get(run.get("tags.mlflow.parentRunId"), {})
        rows.append(_trial_row(run, by_run.get(run["run_id"]), objective, mode, sweep, parent_params))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = _numeric_columns(frame, [c for c in frame.columns if c in config_fields()])
    return frame.sort_values(["start_time", "run_name"], ignore_index=True, na_position="last")


def wide_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Long curves of ONE run -> index step, one column per metric (last value logged at a step wins)."""
    if curves is None or curves.empty:
        return pd.DataFrame()
    last = curves.sort_values("timestamp").drop_duplicates(["key", "step"], keep="last")
    return last.pivot(index="step", columns="key", values="value").sort_index()


def select_epochs(wide: pd.DataFrame, objective: str = OBJECTIVE, mode: str = "max") -> dict[str, Any]:
    """Best/final validation metrics and test metrics under both conventions (module docstring)."""
    out: dict[str, Any] = {
        "objective": np.nan,
        "best_epoch": np.nan,
        "final_epoch": np.nan,
        "sel_test_epoch": np.nan,
        "oracle_test_epoch": np.nan,
        "test_epochs": 0,
    }
    val = [k for k in wide.columns if k.startswith("val/") and not k.endswith(TIME_SUFFIX)]
    test = [k for k in wide.columns if k.startswith("test/") and not k.endswith(TIME_SUFFIX)]
    if START_STEP in wide.index:  # the starting network, reported before the first step
        out.update({f"start_{k}": wide.at[START_STEP, k] for k in [*val, *test]})
        wide = wide.drop(index=START_STEP)
    if objective not in wide.columns or wide[objective].dropna().empty:
        return out
    series = wide[objective].dropna()
    best = series.idxmax() if mode == "max" else series.idxmin()
    out.update(objective=float(series[best]), best_epoch=int(best), final_epoch=int(series.index.max()))
    out.update({f"best_{k}": wide.at[best, k] for k in val})
    out.update({f"final_{k}": _last(wide[k]) for k in val})
    test_objective = "test/" + objective.split("/", 1)[1]
    tested = wide[test_objective].dropna() if test_objective in wide.columns else pd.Series(dtype=float)
    out["test_epochs"] = len(tested)
    before = tested[tested.index <= best]
    if len(before):
        sel = int(before.index.max())
        out.update({"sel_test_epoch": sel, **{f"sel_{k}": wide.at[sel, k] for k in test}})
    if len(tested):
        oracle = int(tested.idxmax() if mode == "max" else tested.idxmin())
        out.update({"oracle_test_epoch": oracle, **{f"oracle_{k}": wide.at[oracle, k] for k in test}})
    return out


def compute_seconds(wide: pd.DataFrame, wall_time_s: float) -> float:
    """Training + evaluation seconds summed over the logged epochs (sweeps: ``time/*``; single runs:
    ``train/epoch_time_s`` + ``*/eval_time_s``); the run's wall time when no epoch times were logged."""
    if "time/train_s" in wide.columns:
        cols = [c for c in ("time/train_s", "time/eval_s") if c in wide.columns]
    elif "train/epoch_time_s" in wide.columns:
        cols = ["train/epoch_time_s", *[c for c in wide.columns if c.endswith(TIME_SUFFIX)]]
    else:
        return wall_time_s
    return float(wide[cols].sum().sum())


def devices(run_params: dict[str, str], parent_params: dict[str, str]) -> tuple[float, str]:
    """(devices held by a trial, unit): ``resources.gpu``/``resources.cpu`` run params, else the sweep's
    ``gpus_per_trial``/``cpus_per_trial``; without either, one device is assumed (and the unit says so)."""
    merged = {**parent_params, **run_params}
    gpus = _number(merged.get("resources.gpu", merged.get("gpus_per_trial")))
    if gpus > 0:
        return gpus, "GPU-hours"
    cpus = _number(merged.get("resources.cpu", merged.get("cpus_per_trial")))
    if cpus > 0:
        return cpus, "CPU-core-hours"
    return 1.0, "device-hours (1 device assumed)"


def _trial_row(
    run: pd.Series, curves: pd.DataFrame | None, objective: str, mode: str, sweep: str | None, parent: dict
) -> dict[str, Any]:
    params = _params(run)
    config = canonical_flat(params)
    wide = wide_curves(curves)
    chosen = select_epochs(wide, objective, mode)
    epochs_run = int(wide.index.max()) if len(wide) else 0
    if objective in wide.columns and wide[objective].notna().any():
        epochs_run = int(wide[objective].dropna().index.max())  # 0: only the starting network was evaluated
    n_epochs = config.get("schedule.n_epochs")
    stopped = run.get(f"tags.{STOPPED_TAG}")
    if isinstance(stopped, str):
        stopped_early = stopped.lower() == "true"
    else:
        stopped_early = bool(run["status"] == "FINISHED" and n_epochs and epochs_run < n_epochs)
    wall = (run["end_time"] - run["start_time"]).total_seconds() if pd.notna(run["end_time"]) else np.nan
    compute = compute_seconds(wide, wall)
    count, unit = devices(params, parent)
    row = {
        "run_id": run["run_id"],
        "run_name": run["run_name"],
        "trial_id": _get(run, TRIAL_TAG) or run["run_name"],
        "sweep": _get(run, SWEEP_TAG) or sweep,
        "status": run["status"],
        "error": _get(run, ERROR_TAG),
        "start_time": run["start_time"],
        "end_time": run["end_time"],
        "config_id": _get(run, CONFIG_TAG) or config_id(params),
        "repeat_of": _get(run, REPEAT_TAG),
        "baseline": _get(run, BASELINE_TAG) == "true",
        "collapsed_epoch": _number(_get(run, COLLAPSED_TAG)) if _get(run, COLLAPSED_TAG) else np.nan,
        "seed": config.get("seed"),
        "objective": chosen.pop("objective"),
        "best_epoch": chosen.pop("best_epoch"),
        "epochs_run": epochs_run,
        "n_epochs": n_epochs,
        "stopped_early": stopped_early,
        "wall_time_s": wall,
        "compute_s": compute,
        "device_hours": compute * count / 3600,
        "device_unit": unit,
    }
    row.update({k: display_value(v) for k, v in config.items() if k != "seed"})
    row.update(chosen)
    return row


def _params(run: pd.Series) -> dict[str, str]:
    return {k[len("params.") :]: v for k, v in run.items() if k.startswith("params.") and isinstance(v, str)}


def _get(run: pd.Series, tag: str) -> str | None:
    value = run.get(f"tags.{tag}")
    return value if isinstance(value, str) and value else None


def _last(series: pd.Series) -> float:
    values = series.dropna()
    return float(values.iloc[-1]) if len(values) else np.nan


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _numeric_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Configuration columns whose values are all numbers (e.g. ``schedule.tau`` = ``55``) become numeric."""
    for col in columns:
        values = frame[col].dropna()
        if (
            values.empty
            or pd.api.types.is_numeric_dtype(frame[col])
            or pd.api.types.is_bool_dtype(frame[col])
        ):
            continue
        if values.map(lambda v: isinstance(v, (bool, np.bool_))).any():
            continue
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (TypeError, ValueError):
            pass
    return frame
