"""Figures of a sweep (matplotlib, object-oriented API: no pyplot state, PNG through the Agg canvas).

Every function takes the tidy DataFrames of :mod:`analysis.mlflow_io` and returns a ``Figure``; save it with
:func:`save_figure`. In a notebook with ``%matplotlib inline`` a returned figure displays itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from analysis.importance import LOG_SPAN, Importance
from analysis.tables import varying_params
from dcml_core.metric_names import OBJECTIVE

OBJECTIVE_LABEL = "best val Recall@1"


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", format="png")
    return path


def learning_curves(curves: pd.DataFrame, trials: pd.DataFrame, key: str = OBJECTIVE) -> Figure:
    """``key`` against epoch for every trial; early-stopped trials dashed with an x at their last epoch."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    part = curves[curves["key"] == key]
    for _, trial in trials.iterrows():
        run = part[part["run_id"] == trial["run_id"]].sort_values("step")
        if run.empty:
            continue
        failed, early = trial["status"] in ("FAILED", "KILLED"), bool(trial["stopped_early"])
        style = dict(color="tab:red", ls=":") if failed else dict(color="tab:gray", ls="--") if early else {}
        if trial.get("baseline") is True:  # the published configuration: thick, whatever became of it
            style = {**style, "color": "black", "lw": 2.4}
        ax.plot(run["step"], run["value"], **{"lw": 1.2, "alpha": 0.85, **style})  # finished: a colour each
        if early or failed:
            ax.plot(
                run["step"].iloc[-1], run["value"].iloc[-1], "x" if early else "o", color=style["color"], ms=7
            )
    ax.set(xlabel="epoch (0: the starting network)", ylabel=key, title=f"Learning curves ({len(trials)} trials)")
    ax.legend(
        handles=[
            Line2D([], [], color="black", label="ran to the end (colour per trial)"),
            Line2D([], [], color="tab:gray", ls="--", marker="x", label="stopped early"),
            Line2D([], [], color="tab:red", ls=":", marker="o", label="failed / collapsed / killed"),
            Line2D([], [], color="black", lw=2.4, label="baseline (published configuration)"),
        ],
        loc="best",
        fontsize=8,
    )
    ax.grid(alpha=0.3)
    return fig


def params_vs_objective(
    trials: pd.DataFrame, params: Sequence[str] | None = None, objective: str = "objective"
) -> Figure:
    """One panel per varying hyper-parameter: its value against the objective (categories side by side)."""
    params = list(params) if params is not None else varying_params(trials)
    data = _finished(trials, objective)
    if not params or data.empty:
        return _message_figure("no varying hyper-parameter with a finished objective")
    ncols = min(3, len(params))
    nrows = int(np.ceil(len(params) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    early = data["stopped_early"].astype(bool).to_numpy()
    for ax, param in zip(axes, params):
        x = _positions(ax, data[param])
        ax.scatter(x[~early], data[objective][~early], s=22, label="ran to the end")
        ax.scatter(
            x[early], data[objective][early], s=22, marker="x", color="tab:gray", label="stopped early"
        )
        ax.set(xlabel=param, ylabel=OBJECTIVE_LABEL if objective == "objective" else objective)
        ax.grid(alpha=0.3)
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance_bars(importance: Importance) -> Figure:
    """Horizontal bars of normalised importances (or the reason there are none)."""
    if not importance.values:
        return _message_figure(f"no importances: {importance.note}")
    names = list(importance.values)[::-1]
    fig = Figure(figsize=(6.5, 0.45 * len(names) + 1.4))
    ax = fig.subplots()
    ax.barh(names, [importance.values[n] for n in names], color="tab:blue")
    ax.set(
        xlabel="importance (normalised)",
        xlim=(0, 1),
        title=f"{importance.evaluator} on {importance.n_trials} trials"
        + (f"\n({importance.source})" if importance.source else ""),
    )
    ax.grid(axis="x", alpha=0.3)
    return fig


def val_vs_test(trials: pd.DataFrame, val: str = "objective", test: str = "sel_test/recall_at_1") -> Figure:
    """Validation objective against test Recall@1 at the selected epoch, with Kendall's tau (transfer)."""
    finished = _finished(trials, val)
    data = finished[[val, test]].astype(float).dropna() if test in trials.columns else pd.DataFrame()
    if data.empty:
        return _message_figure(f"no finished trial has both {val} and {test}")
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    ax.scatter(data[val], data[test], s=24, label="finished trials")
    top = data[val].idxmax()
    ax.scatter(
        data.at[top, val],
        data.at[top, test],
        s=160,
        marker="*",
        color="tab:orange",
        label="selected (best val)",
    )
    lo, hi = float(data.min().min()), float(data.max().max())
    ax.plot([lo, hi], [lo, hi], "--", color="tab:gray", lw=1, label="test = val")
    title = "Does validation selection transfer to test?"
    if len(data) >= 3 and data[val].nunique() > 1 and data[test].nunique() > 1:
        tau = stats.kendalltau(data[val], data[test]).statistic
        title += f"\nKendall tau = {tau:.2f} over {len(data)} trials"
    ax.set(
        xlabel=OBJECTIVE_LABEL if val == "objective" else val,
        ylabel=f"{test} (val-selected epoch)",
        title=title,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def quality_vs_cost(sweeps: Mapping[str, pd.DataFrame], objective: str = "objective") -> Figure:
    """Per trial: objective vs its device-hours; per sweep: best-so-far vs cumulative device-hours."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    units = set()
    for name, trials in sweeps.items():
        ordered = trials.sort_values("end_time", na_position="last")  # every trial costs, finished or not
        data = _finished(ordered, objective)
        if data.empty:
            continue
        units.update(ordered["device_unit"].unique())
        early = data["stopped_early"].astype(bool).to_numpy()
        points = left.scatter(data["device_hours"][~early], data[objective][~early], s=22, label=f"{name}")
        left.scatter(
            data["device_hours"][early],
            data[objective][early],
            s=22,
            marker="x",
            color=points.get_facecolor()[0],
        )
        spent = ordered["device_hours"].fillna(0).cumsum()
        best = ordered[objective].where(ordered.index.isin(data.index)).cummax().ffill()
        right.step(spent, best, where="post", marker=".", label=name)
    unit = units.pop() if len(units) == 1 else "device-hours (mixed units)"
    left.set(
        xlabel=f"{unit} of the trial", ylabel=OBJECTIVE_LABEL, title="Quality against cost (x: stopped early)"
    )
    right.set(
        xlabel=f"cumulative {unit} (trials in finishing order)",
        ylabel=f"{OBJECTIVE_LABEL} so far",
        title="Best so far",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _positions(ax: object, values: pd.Series) -> np.ndarray:
    """x positions of a parameter: numbers as they are (log axis over a decade or more), categories 0..n-1."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        v = values.astype(float).to_numpy()
        if np.nanmin(v) > 0 and np.nanmax(v) / np.nanmin(v) >= LOG_SPAN:
            ax.set_xscale("log")
        return v
    cats = sorted(values.astype(str).unique())
    ax.set_xticks(range(len(cats)), cats, rotation=20 if max(map(len, cats)) > 8 else 0, fontsize=8)
    return values.astype(str).map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=float)


def _finished(trials: pd.DataFrame, objective: str) -> pd.DataFrame:
    """Finished trials (early-stopped included) with a finite objective."""
    return trials[(trials["status"] == "FINISHED") & np.isfinite(trials[objective].astype(float))]


def _message_figure(text: str) -> Figure:
    """A figure that only says why there is nothing to plot (on a hidden axes: IPython skips figures without
    any axes, so a bare ``fig.text`` would show nothing in a notebook)."""
    fig = Figure(figsize=(6, 1.6))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig
