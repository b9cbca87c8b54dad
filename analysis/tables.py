"""Best configurations and paper-style tables (mean ± CI over seeds) as DataFrames, Markdown and LaTeX.

Two conventions for the test numbers (analysis/trials.py): ``selection="val"`` reports test metrics at the
epoch the validation objective selected (the honest number); ``selection="oracle"`` at the epoch with the best
test Recall@1, as the original DiVA/DCML/Revisiting code reports it (algorithms.md §5; optimistic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.params import config_fields
from analysis.stats import FINISHED, seed_summary
from analysis.trials import SELECTIONS
from dcml_core.metric_names import safe_name
from dcml_core.metrics import metric_label, registered

SELECTION_TITLES = {
    "val": "test metrics at the validation-selected epoch",
    "oracle": "test metrics at the best test epoch (the original projects' convention; selects on test)",
}
NOT_PARAMS = ("seed", "data.root", "data.num_workers", "data.val_seed", "device", "eval.device")


def paper_metrics(trials: pd.DataFrame) -> list[str]:
    """The paper-table metrics of the METRICS registry (``paper=True``), in registration order.

    A per-k metric gives the k logged for the primary evaltype (ascending; SOP: 1, 10, 100); the others come
    after them: ``recall_at_1 .. recall_at_8``, then ``nmi``, ``f1``, ``map_at_r``. Labels: :func:`metric_label`.
    """
    per_k, single = [], []
    for metric in (m for m in registered() if m.paper):
        if metric.per_k:
            pattern = re.compile(rf"(?:best_val|final_val|sel_test|oracle_test)/{re.escape(safe_name(metric.name))}_at_(\d+)")
            ks = sorted({int(m.group(1)) for c in trials.columns if (m := pattern.fullmatch(c))})
            per_k += [safe_name(f"{metric.name}@{k}") for k in ks]
        else:
            single.append(safe_name(metric.name))
    return per_k + single


def varying_params(trials: pd.DataFrame) -> list[str]:
    """Configuration columns with more than one value among the trials (not the seed nor machine settings)."""
    keys = [c for c in trials.columns if c in config_fields() and c not in NOT_PARAMS]
    return [c for c in keys if trials[c].astype(str).nunique(dropna=False) > 1]


def config_labels(trials: pd.DataFrame, params: Sequence[str] | None = None) -> dict[str, str]:
    """``config_id -> "compos_num=4, lr=1.2e-05"`` from the parameters that vary (short names when unique)."""
    params = list(params) if params is not None else varying_params(trials)
    short = [p.rsplit(".", 1)[-1] for p in params]
    names = short if len(set(short)) == len(short) else params
    labels = {}
    for cid, group in trials.groupby("config_id", sort=False):
        row = group.iloc[0]
        if names:
            labels[cid] = ", ".join(f"{n}={format_value(row[p])}" for n, p in zip(names, params))
        else:
            parts = [str(row[k]) for k in ("model.method", "data.dataset") if k in row and pd.notna(row[k])]
            labels[cid] = " / ".join(parts) or str(cid)
    return labels


def best_configs(
    trials: pd.DataFrame, k: int = 5, mode: str = "max", statuses: Sequence[str] | None = FINISHED
) -> pd.DataFrame:
    """The ``k`` best configurations by mean best validation objective over their runs.

    Columns: ``rank, config_id, configuration, n_runs, objective`` (mean), ``objective_max, best_run_id,
    best_run_name, best_epoch, epochs_run, stopped_early`` (of the best run), then the varying parameters.
    """
    pool = trials if statuses is None else trials[trials["status"].isin(statuses)]
    pool = pool[np.isfinite(pool["objective"].astype(float))]
    if pool.empty:
        return pd.DataFrame(columns=["rank", "config_id", "configuration", "n_runs", "objective"])
    labels, params = config_labels(trials), varying_params(trials)
    rows = []
    for cid, group in pool.groupby("config_id", sort=False):
        best = group.loc[group["objective"].idxmax() if mode == "max" else group["objective"].idxmin()]
        rows.append(
            {
                "config_id": cid,
                "configuration": labels[cid],
                "n_runs": len(group),
                "objective": group["objective"].mean(),
                "objective_max": group["objective"].max(),
                "best_run_id": best["run_id"],
                "best_run_name": best["run_name"],
                "best_epoch": best["best_epoch"],
                "epochs_run": best["epochs_run"],
                "stopped_early": best["stopped_early"],
                **{p: best[p] for p in params},
            }
        )
    out = pd.DataFrame(rows).sort_values("objective", ascending=(mode == "min"), kind="stable").head(k)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out.reset_index(drop=True)


def paper_table(
    trials: pd.DataFrame,
    selection: str = "val",
    k: int | None = 5,
    mode: str = "max",
    confidence: float = 0.95,
    statuses: Sequence[str] | None = FINISHED,
) -> pd.DataFrame:
    """Numeric paper table, one row per configuration (best ``k`` by validation objective; None: all).

    Columns: ``config_id, configuration, n`` (seeds), then per metric ``<label>`` (mean) and
    ``<label> ci`` (t-interval half-width; NaN with one seed), e.g. ``R@1``, ``R@1 ci``, ``NMI``, ...
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    prefix = SELECTIONS[selection]
    ranked = best_configs(trials, k=k if k is not None else len(trials), mode=mode, statuses=statuses)
    metrics = paper_metrics(trials)
    for m in metrics:  # metrics a data set does not log stay empty ("–") instead of failing
        if prefix + m not in trials.columns:
            trials = trials.assign(**{prefix + m: np.nan})
    summary = seed_summary(trials, [prefix + m for m in metrics], confidence=confidence, statuses=statuses)
    rows = []
    for _, cfg in ranked.iterrows():
        part = summary[summary["config_id"] == cfg["config_id"]].set_index("metric")
        row = {"config_id": cfg["config_id"], "configuration": cfg["configuration"], "n": int(cfg["n_runs"])}
        for m in metrics:
            row[metric_label(m)] = part.at[prefix + m, "mean"]
            row[f"{metric_label(m)} ci"] = part.at[prefix + m, "ci"]
        rows.append(row)
    return pd.DataFrame(rows, columns=["config_id", "configuration", "n", *_stat_columns(metrics)])


def stack_tables(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Paper tables of several sweeps in one, each configuration prefixed with its sweep's name."""
    parts = [
        t.assign(configuration=[f"{name}: {c}" for c in t["configuration"]]) for name, t in tables.items()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def compare_table(sweeps: Mapping[str, pd.DataFrame], selection: str = "val", k: int = 1) -> pd.DataFrame:
    """The best ``k`` configurations of each sweep (``{name: trial table}``) in one paper table."""
    return stack_tables({name: paper_table(trials, selection, k=k) for name, trials in sweeps.items()})


def format_cells(table: pd.DataFrame, scale: float = 100.0, digits: int = 2, pm: str = "±") -> pd.DataFrame:
    """Strings ``"68.42 ± 1.23"`` (percent by default); ``"68.42"`` for one seed; ``"–"`` when missing."""
    means = [
        c for c in table.columns if c not in ("config_id", "configuration", "n") and not c.endswith(" ci")
    ]
    out = pd.DataFrame({"Configuration": table["configuration"], "n": table["n"].astype(int).astype(str)})
    for col in means:
        out[col] = [format_mean_ci(m, h, scale, digits, pm) for m, h in zip(table[col], table[f"{col} ci"])]
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame's values as text (tabulate; ``|`` escaped)."""
    text = frame.astype(str).map(lambda v: v.replace("|", "\\|"))
    text.columns = [str(c).replace("|", "\\|") for c in frame.columns]
    return text.to_markdown(index=False, tablefmt="github", disable_numparse=True) + "\n"


def latex_table(frame: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs ``table`` environment of a DataFrame's values as text (pandas Styler; LaTeX characters
    escaped, ``±`` as ``$\\pm$`` and ``–`` as ``--``)."""
    styler = (
        frame.astype(str).style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    )
    text = styler.to_latex(
        caption=latex_escape(caption) if caption else None,
        label=label or None,
        position="t",
        position_float="centering",
        column_format="l" + "c" * (len(frame.columns) - 1),
        hrules=True,
    )
    return text.replace("±", r"$\pm$").replace("–", "--")


def latex_escape(text: str) -> str:
    """Escape ``& % $ # _ { } ~ ^ \\``; ``±`` -> ``$\\pm$``, ``–`` -> ``--`` (for captions; cells go through
    pandas' own escaping in :func:`latex_table`)."""
    table = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "±": r"$\pm$",
        "–": "--",
    }
    return "".join(table.get(ch, ch) for ch in text)


def to_markdown(table: pd.DataFrame, **fmt: float) -> str:
    """Paper table (numeric, from :func:`paper_table`) as Markdown."""
    return markdown_table(format_cells(table, **fmt))


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "", **fmt: float) -> str:
    """Paper table (numeric, from :func:`paper_table`) as a LaTeX ``table``."""
    return latex_table(format_cells(table, **fmt), caption=caption, label=label)


def _stat_columns(metrics: Sequence[str]) -> list[str]:
    return [c for m in metrics for c in (metric_label(m), f"{metric_label(m)} ci")]


def format_mean_ci(mean: float, half: float, scale: float = 100.0, digits: int = 2, pm: str = "±") -> str:
    """``"68.42 ± 1.23"`` from a mean and a half-width (``"68.42"`` without one, ``"–"`` without a mean)."""
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return f"{text} {pm} {half * scale:.{digits}f}" if half is not None and math.isfinite(half) else text


def format_value(value: object) -> str:
    """A parameter value for a label or table cell: floats with 3 significant digits, whole floats as ints."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    if isinstance(value, float):
        return str(int(value))
    return str(value)
