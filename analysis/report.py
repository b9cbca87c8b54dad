"""``python -m analysis.report --experiment NAME [--tracking-uri URI] --out DIR [--compare OTHER]``.

Writes ``DIR/report.md`` and ``DIR/report.html`` (tables and figures), the figures as PNG, the two paper tables
as LaTeX (``table_val.tex``, ``table_oracle.tex``), the joined Ray/Optuna/MLflow trial table
(``trials_joined.csv``) and, from the best trials' checkpoints, a retrieval grid, an embedding map, Recall@1
per head and evaltype, and evaltype weights tuned on validation data (``per_head.csv``,
``evaltype_weights.csv``). Reads MLflow, the sweep's stored Optuna study and the logged checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import plots, tables
from analysis.best_trials import TrialViews, analyse_best_trials, recall_by_head, weights_by_trial
from analysis.checkpoints import checkpoint_uris
from analysis.evaltype_weights import DEFAULT_TRIALS
from analysis.importance import Importance, param_importances, study_importances
from analysis.joined import joined_table, load_study
from analysis.md_html import markdown_to_html
from analysis.mlflow_io import (
    EmptyExperimentError,
    ExperimentNotFoundError,
    SweepData,
    client_for,
    load_sweep,
)
from analysis.report_sections import (
    DEFINITIONS,
    best_table,
    best_trial_sections,
    comparison,
    gains_section,
    importance_note,
    joined_section,
    oracle_title,
    overview,
    seed_section,
    untested_note,
)
from dcml_core.checkpoint import CheckpointError
from dcml_core.tracking import TrackingError, check_tracking_uri, is_remote

FIGURES = {
    "learning_curves": "Learning curves of all trials (validation Recall@1; x: stopped early)",
    "params_vs_objective": "Each hyper-parameter against the best validation Recall@1",
    "importance": "Hyper-parameter importance",
    "val_vs_test": "Validation against test Recall@1 (does selection transfer?)",
    "quality_vs_cost": "Quality against device-hours",
}


@dataclass(frozen=True)
class ReportOptions:
    """What the report reads besides MLflow, and how much checkpoint work it does."""

    top_k: int = 5  # configurations in the tables
    views_top_k: int = 3  # best trials whose checkpoints are evaluated (0: none)
    weight_trials: int = DEFAULT_TRIALS  # Optuna trials of the evaltype-weight tuning
    seed: int = 0  # of the weight tuning, the query choice and t-SNE
    data_root: str | None = None  # data set folder for the checkpoints (default: the one they trained on)
    device: str | None = None  # for the checkpoints (default: their configuration's)
    state_dir: str | None = None  # the sweep's sweep_state folder (default: from the parent run's params)


def build_report(
    experiment: str,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    compare: str | None = None,
    top_k: int = 5,
    options: ReportOptions | None = None,
) -> list[Path]:
    """Write the report files of one experiment (optionally compared with another); returns their paths."""
    opts = options or ReportOptions(top_k=top_k)
    for name, value in (("--top-k", opts.top_k), ("--weight-trials", opts.weight_trials)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if opts.views_top_k < 0:
        raise ValueError(f"--views-top-k must be 0 (no checkpoint views) or more, got {opts.views_top_k}")
    if opts.data_root and not Path(opts.data_root).is_dir():
        raise FileNotFoundError(f"--data-root {opts.data_root} is not a folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    _, uri = client_for(tracking_uri)
    if is_remote(uri):
        check_tracking_uri(uri)
    sweep = load_sweep(experiment, uri)
    other = load_sweep(compare, uri) if compare else None
    study = load_study(sweep, opts.state_dir)
    uris = checkpoint_uris(sweep)
    joined = joined_table(sweep, study, uris)
    best = _best_trials(sweep, opts, out) if opts.views_top_k and uris else []
    out.mkdir(parents=True, exist_ok=True)
    importance = study_importances(study) if study is not None else param_importances(sweep.trials)
    written = _figures(sweep, other, importance, best, opts.seed, out)
    joined.to_csv(out / "trials_joined.csv", index=False)
    written.append(out / "trials_joined.csv")
    for name, frame in (("per_head", recall_by_head(best)), ("evaltype_weights", weights_by_trial(best))):
        if len(frame):
            frame.to_csv(out / f"{name}.csv", index=False)
            written.append(out / f"{name}.csv")
    val_table = tables.paper_table(sweep.trials, "val", k=opts.top_k)
    oracle_table = tables.paper_table(sweep.trials, "oracle", k=opts.top_k)
    for name, table in (("val", val_table), ("oracle", oracle_table)):
        caption = f"{experiment}: {tables.SELECTION_TITLES[name]} (mean ± 95% CI over seeds)"
        path = out / f"table_{name}.tex"
        path.write_text(tables.to_latex(table, caption=caption, label=f"tab:{experiment}-{name}"))
        written.append(path)
    text = render_markdown(sweep, other, val_table, oracle_table, opts.top_k, joined, importance, best)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, title=f"Sweep report: {experiment}"))
    return [out / "report.md", out / "report.html", *written]


def _best_trials(sweep: SweepData, opts: ReportOptions, out: Path) -> list[TrialViews]:
    try:
        return analyse_best_trials(
            sweep,
            opts.views_top_k,
            opts.data_root,
            opts.device,
            opts.weight_trials,
            opts.seed,
            out / "checkpoints",
        )
    except (FileNotFoundError, CheckpointError) as err:
        raise type(err)(
            f"{err} (checkpoint views of the best trials; pass --data-root DIR, or --views-top-k 0 to skip them)"
        ) from None


def render_markdown(
    sweep: SweepData,
    other: SweepData | None,
    val_table: pd.DataFrame,
    oracle_table: pd.DataFrame,
    top_k: int,
    joined: pd.DataFrame | None = None,
    importance: Importance | None = None,
    best: Sequence[TrialViews] = (),
) -> str:
    """The report's Markdown text (figures referenced by their PNG file names)."""
    parts = [f"# Sweep report: {sweep.name}", overview(sweep)]
    ranked = tables.best_configs(sweep.trials, k=top_k)
    parts += [f"## Best configurations (top {top_k} by validation Recall@1)", best_table(ranked)]
    parts += ["## What training and tuning gained", gains_section(sweep.trials)]
    parts += [
        "## Test results, validation-selected",
        untested_note(sweep),
        tables.to_markdown(val_table),
        "LaTeX: `table_val.tex`",
        "```latex\n" + tables.to_latex(val_table).rstrip() + "\n```",
    ]
    parts += [
        f"## Test results, {oracle_title(sweep.trials)} (for comparison with published figures only)",
        "Selected on the **test** set, like the original projects; optimistic.",
        tables.to_markdown(oracle_table),
        "LaTeX: `table_oracle.tex`",
    ]
    seeds = seed_section(sweep)
    if seeds:
        parts += ["## Mean ± CI per configuration over seeds", seeds]
    if joined is not None:
        parts += ["## Trials in Ray, Optuna and MLflow", joined_section(joined)]
    parts += best_trial_sections(best)
    parts.append("## Figures")
    for name, caption in FIGURES.items():
        parts += [f"### {caption}", f"![{caption}]({name}.png)"]
        if name == "importance" and importance is not None:
            parts.append(importance_note(importance))
    if other is not None:
        parts += comparison(sweep, other)
    parts += ["## Definitions", DEFINITIONS]
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"


def to_html(text: str, title: str) -> str:
    """HTML page of the report (markdown-it-py)."""
    return markdown_to_html(text, title=title)


def _figures(
    sweep: SweepData,
    other: SweepData | None,
    importance: Importance,
    best: Sequence[TrialViews],
    seed: int,
    out: Path,
) -> list[Path]:
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
    if best:
        figures["retrieval_grid"] = best[0].retrieval_grid(seed=seed)
        figures["embedding_map"] = best[0].embedding_map(seed=seed)
    return [plots.save_figure(fig, out / f"{name}.png") for name, fig in figures.items()]












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
    parser.add_argument(
        "--views-top-k",
        type=int,
        default=3,
        help="best trials whose logged checkpoints are evaluated: retrieval grid, embedding map, per-head "
        "Recall@1, tuned evaltype weights (default 3; 0 skips them)",
    )
    parser.add_argument(
        "--weight-trials",
        type=int,
        default=DEFAULT_TRIALS,
        help=f"Optuna trials per weight tuning (default {DEFAULT_TRIALS})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weight tuning, query choice and t-SNE"
    )
    parser.add_argument(
        "--data-root", default=None, help="data set folder for the checkpoints (default: as trained)"
    )
    parser.add_argument(
        "--device", default=None, help="device for the checkpoints, e.g. cpu or cuda (default: as trained)"
    )
    parser.add_argument(
        "--sweep-state",
        default=None,
        help="the sweep's sweep_state folder holding optuna.db (default: <storage>/<name>/sweep_state from the "
        "parent run's parameters)",
    )
    args = parser.parse_args(argv)
    options = ReportOptions(
        args.top_k,
        args.views_top_k,
        args.weight_trials,
        args.seed,
        args.data_root,
        args.device,
        args.sweep_state,
    )
    try:
        files = build_report(args.experiment, args.out, args.tracking_uri, args.compare, options=options)
    except (
        ExperimentNotFoundError,
        EmptyExperimentError,
        FileNotFoundError,
        NotADirectoryError,
        TrackingError,
        ValueError,
        CheckpointError,
    ) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {files[0]} and {len(files) - 1} more files in {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
