"""``python -m analysis.report --experiment NAME [--tracking-uri URI] --out DIR [--compare OTHER]``.

Writes ``DIR/report.md`` and ``DIR/report.html`` (tables and figures), the figures as PNG and the two paper
tables as LaTeX (``table_val.tex``, ``table_oracle.tex``). Reads MLflow only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis import plots, tables
from analysis.importance import param_importances
from analysis.md_html import markdown_to_html
from analysis.mlflow_io import (
    EmptyExperimentError,
    ExperimentNotFoundError,
    SweepData,
    client_for,
    load_sweep,
)
from analysis.stats import seed_summary
from dcml_core.tracking import TrackingError, check_tracking_uri, is_remote

FIGURES = {
    "learning_curves": "Learning curves of all trials (validation Recall@1; x: stopped early)",
    "params_vs_objective": "Each hyper-parameter against the best validation Recall@1",
    "importance": "Hyper-parameter importance",
    "val_vs_test": "Validation against test Recall@1 (does selection transfer?)",
    "quality_vs_cost": "Quality against device-hours",
}
SWEEP_PARAMS = ("space", "search", "searcher", "scheduler", "seed", "num_samples", "max_epochs")
DEFINITIONS = """\
- **Validation-selected**: test metrics at the first epoch with the best validation Recall@1 (or the latest \
test evaluation before it when test was not evaluated at that epoch). This is the number to report.
- **Best-test-epoch**: test metrics at the epoch with the best *test* Recall@1, the convention of the \
original DiVA/DCML/Revisiting code. It selects on the test set and is optimistic; use it only to compare \
with published figures.
- Values are percent; `mean ± h` is the mean over seeds and the half-width of the 95% Student-t interval \
(no interval with one seed). Only finished runs count (early-stopped ones included).
- Device-hours: summed per-epoch train + evaluation time times the devices each trial held \
(GPUs if it had any, else CPU cores; one device when the run does not say)."""


def build_report(
    experiment: str,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    compare: str | None = None,
    top_k: int = 5,
) -> list[Path]:
    """Write the report files of one experiment (optionally compared with another); returns their paths."""
    if top_k < 1:
        raise ValueError(f"--top-k must be a positive integer, got {top_k}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    _, uri = client_for(tracking_uri)
    if is_remote(uri):
        check_tracking_uri(uri)
    sweep = load_sweep(experiment, uri)
    other = load_sweep(compare, uri) if compare else None
    out.mkdir(parents=True, exist_ok=True)
    written = _figures(sweep, other, out)
    val_table = tables.paper_table(sweep.trials, "val", k=top_k)
    oracle_table = tables.paper_table(sweep.trials, "oracle", k=top_k)
    for name, table in (("val", val_table), ("oracle", oracle_table)):
        caption = f"{experiment}: {tables.SELECTION_TITLES[name]} (mean ± 95% CI over seeds)"
        path = out / f"table_{name}.tex"
        path.write_text(tables.to_latex(table, caption=caption, label=f"tab:{experiment}-{name}"))
        written.append(path)
    text = render_markdown(sweep, other, val_table, oracle_table, top_k)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, title=f"Sweep report: {experiment}"))
    return [out / "report.md", out / "report.html", *written]


def render_markdown(
    sweep: SweepData, other: SweepData | None, val_table: pd.DataFrame, oracle_table: pd.DataFrame, top_k: int
) -> str:
    """The report's Markdown text (figures referenced by their PNG file names)."""
    parts = [f"# Sweep report: {sweep.name}", _overview(sweep)]
    best = tables.best_configs(sweep.trials, k=top_k)
    parts += [f"## Best configurations (top {top_k} by validation Recall@1)", _best_table(best)]
    parts += [
        "## Test results, validation-selected",
        _untested_note(sweep),
        tables.to_markdown(val_table),
        "LaTeX: `table_val.tex`",
        "```latex\n" + tables.to_latex(val_table).rstrip() + "\n```",
    ]
    parts += [
        "## Test results, best-test-epoch convention (for comparison with published figures only)",
        "Selected on the **test** set, like the original projects; optimistic.",
        tables.to_markdown(oracle_table),
        "LaTeX: `table_oracle.tex`",
    ]
    seeds = _seed_section(sweep)
    if seeds:
        parts += ["## Mean ± CI per configuration over seeds", seeds]
    parts.append("## Figures")
    for name, caption in FIGURES.items():
        parts += [f"### {caption}", f"![{caption}]({name}.png)"]
    if other is not None:
        parts += _comparison(sweep, other)
    parts += ["## Definitions", DEFINITIONS]
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"


def to_html(text: str, title: str) -> str:
    """HTML page of the report (analysis.md_html: the ``markdown`` package is not a dependency)."""
    return markdown_to_html(text, title=title)


def _figures(sweep: SweepData, other: SweepData | None, out: Path) -> list[Path]:
    importance = param_importances(sweep.trials)
    sweeps = {sweep.name: sweep.trials, **({other.name: other.trials} if other is not None else {})}
    figures = {
        "learning_curves": plots.learning_curves(sweep.curves, sweep.trials),
        "params_vs_objective": plots.params_vs_objective(sweep.trials),
        "importance": plots.importance_bars(importance),
        "val_vs_test": plots.val_vs_test(sweep.trials),
        "quality_vs_cost": plots.quality_vs_cost(sweeps),
    }
    if other is not None:
        figures["compare_curves"] = plots.learning_curves(other.curves, other.trials)
    return [plots.save_figure(fig, out / f"{name}.png") for name, fig in figures.items()]


def _overview(sweep: SweepData) -> str:
    trials = sweep.trials
    params = sweep.parent.get("params", {})
    lines = [
        f"Experiment `{sweep.name}` in `{sweep.tracking_uri}`, generated {time.strftime('%Y-%m-%d %H:%M')}."
    ]
    if params:
        keys = [k for k in SWEEP_PARAMS if k in params]
        lines.append("Sweep: " + ", ".join(f"{k} `{params[k]}`" for k in keys) + ".")
    if sweep.repeat_of:
        lines.append(f"Seed repeats of sweep `{sweep.repeat_of}`: runs are grouped by configuration id.")
    done = trials["status"] == "FINISHED"
    early = done & trials["stopped_early"].astype(bool)
    counts = {
        "ran to the end": int((done & ~early).sum()),
        "stopped early": int(early.sum()),
        "failed": int((trials["status"] == "FAILED").sum()),
        "killed or unfinished": int((~trials["status"].isin(["FINISHED", "FAILED"])).sum()),
    }
    lines.append(f"Trials: {len(trials)} (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ").")
    for unit, hours in trials.groupby("device_unit")["device_hours"].sum().items():
        lines.append(f"Compute: {hours:.3g} {unit}.")
    return " ".join(lines)


def _untested_note(sweep: SweepData) -> str:
    trials = sweep.trials
    finished = trials[(trials["status"] == "FINISHED") & trials["objective"].notna()]
    missing = int(finished["sel_test_epoch"].isna().sum()) if "sel_test_epoch" in finished else len(finished)
    if not missing:
        return ""
    return (
        f"{missing} of {len(finished)} finished runs have no test evaluation at or before their "
        "validation-selected epoch (their cells read –); single runs evaluate test only every "
        "`eval.test_every` epochs and at the end."
    )


def _best_table(best: pd.DataFrame) -> str:
    if best.empty:
        return "No finished trial with a validation objective."
    shown = best.drop(columns=["best_run_id"]).copy()
    shown["objective"] = shown["objective"].map(lambda v: f"{v:.4f}")
    shown["objective_max"] = shown["objective_max"].map(lambda v: f"{v:.4f}")
    shown = shown.rename(columns={"objective": "val R@1 (mean)", "objective_max": "val R@1 (best run)"})
    return tables.markdown_table(shown.map(tables.format_value))


def _seed_section(sweep: SweepData) -> str:
    metrics = [m for m in ("objective", "sel_test/recall_at_1") if m in sweep.trials.columns]
    summary = seed_summary(sweep.trials, metrics)
    if summary.empty or summary["n"].max() < 2:
        return ""
    labels = tables.config_labels(sweep.trials)
    rows = []
    for cid, part in summary.groupby("config_id", sort=False):
        row = {"config_id": cid, "configuration": labels.get(cid, cid), "seeds": part["seeds"].iloc[0]}
        for _, r in part.iterrows():
            name = "val R@1" if r["metric"] == "objective" else "test R@1 (val-selected)"
            row[f"{name} mean ± CI"] = tables.format_mean_ci(r["mean"], r["ci"], 100, 2, "±")
            row[f"{name} std"] = "–" if pd.isna(r["std"]) else f"{100 * r['std']:.2f}"
        rows.append(row)
    return tables.markdown_table(pd.DataFrame(rows))


def _comparison(sweep: SweepData, other: SweepData) -> list[str]:
    parts = [
        f"## Comparison: `{sweep.name}` against `{other.name}`",
        "Best configuration of each sweep (by validation Recall@1).",
    ]
    for selection, title in tables.SELECTION_TITLES.items():
        stacked = tables.compare_table({sweep.name: sweep.trials, other.name: other.trials}, selection)
        parts += [f"### {title.capitalize()}", tables.to_markdown(stacked)]
    parts += [
        f"### Learning curves of `{other.name}`",
        f"![Learning curves of {other.name}](compare_curves.png)",
    ]
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 with one error line on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="MLflow experiment (= sweep name)")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="sqlite:///PATH, http://HOST:PORT or a folder "
        "holding mlflow.db (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)",
    )
    parser.add_argument("--out", required=True, help="folder for report.md, report.html and the figures")
    parser.add_argument("--compare", default=None, help="a second experiment to compare with (e.g. DiVA)")
    parser.add_argument("--top-k", type=int, default=5, help="configurations in the tables (default 5)")
    args = parser.parse_args(argv)
    try:
        files = build_report(args.experiment, args.out, args.tracking_uri, args.compare, args.top_k)
    except (
        ExperimentNotFoundError,
        EmptyExperimentError,
        FileNotFoundError,
        NotADirectoryError,
        TrackingError,
        ValueError,
    ) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {files[0]} and {len(files) - 1} more files in {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
