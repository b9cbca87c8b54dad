"""Sections of the sweep report that come from the joined records and the best checkpoints (Markdown text)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd

from analysis import tables
from analysis.best_trials import TrialViews, recall_by_head, weights_by_trial
from analysis.evaltype_weights import format_table
from analysis.gains import start_gains, tuning_gain
from analysis.importance import Importance
from analysis.mlflow_io import SweepData
from analysis.stats import seed_summary

DEFINITIONS = """\
- **Validation-selected**: test metrics at the first epoch with the best validation Recall@1 (or the latest \
test evaluation before it when test was not evaluated at that epoch). This is the number to report.
- **Best-test-epoch**: test metrics at the epoch with the best *test* Recall@1 among the epochs where test \
was evaluated, the convention of the original DiVA/DCML/Revisiting code. Sweeps evaluate test only when \
validation improves (or every `eval.test_every` epochs; set it to 1 to evaluate every epoch), so the section \
title says how many epochs that covers. It selects on the test set and is optimistic; use it only to compare \
with published figures.
- **Optuna state**: COMPLETE (ran all its epochs), PRUNED (stopped early by the scheduler), FAIL (error), as \
the sweep's searcher told Optuna; importances use the COMPLETE trials only, as Optuna does.
- **Evaltype weights** are tuned on the validation split only (seeded TPE on Recall@1); the test split is \
embedded after tuning ends. Paper weightings: CUB (0.5, 1, 1, 1), CARS (0.5, 2, 2, 2), SOP (1, 1, 1, 1), \
heads in the order discriminative, selfsimilarity, shared, intra.
- Values are percent; `mean ± h` is the mean over seeds and the half-width of the 95% Student-t interval \
(no interval with one seed). Only finished runs count (early-stopped ones included).
- **Start** (epoch 0): the network before its first training step (untrained on the demo, \
ImageNet-pretrained on the real data sets); it is never selected. **Baseline**: the run of the space's \
published configuration (trial 1 of every sweep, tag `dcml.baseline`). **Collapsed**: a run whose validation \
embeddings all lie at one point (`val/embedding_spread` below 0.01); it ends and is reported as collapsed, not \
scored.
- Device-hours: summed per-epoch train + evaluation time times the devices each trial held \
(GPUs if it had any, else CPU cores; one device when the run does not say)."""
BEST_VAL, SEL_TEST = "best_val/recall_at_1", "sel_test/recall_at_1"
SWEEP_PARAMS = ("space", "search", "searcher", "scheduler", "seed", "num_samples", "max_epochs")


def oracle_title(trials: pd.DataFrame) -> str:
    """Exact name of the ``oracle_test`` selection: how many of the epochs run had a test evaluation."""
    done = trials[(trials["status"] == "FINISHED") & trials["objective"].notna()]
    if "test_epochs" not in done.columns or done.empty:
        return "best-test-epoch convention"
    tested, run = int(done["test_epochs"].sum()), int(done["epochs_run"].sum())
    if tested >= run:
        return "best-test-epoch convention (test evaluated at every epoch)"
    return f"best-test-epoch convention among the evaluated epochs (test evaluated at {tested} of {run} epochs run)"


def joined_section(joined: pd.DataFrame) -> str:
    """The joined Ray/Optuna/MLflow table (primary metrics only; the CSV has every column)."""
    shown = joined.drop(columns=[c for c in joined.columns if c.startswith("best_val/") and c != BEST_VAL])
    shown = shown.drop(columns=[c for c in shown.columns if c.startswith("sel_test/") and c != SEL_TEST])
    shown = shown.assign(checkpoint=shown["checkpoint"].notna().map({True: "yes", False: ""}))
    text = shown.astype(object).where(shown.notna(), "–").map(tables.format_value)
    return (
        "One row per trial, joined on the Ray trial id: the Optuna trial and its state from the sweep's stored "
        "study, the MLflow run, the sampled configuration, epochs, the best validation Recall@1 and the test "
        "Recall@1 at the validation-selected epoch; `checkpoint`: the run holds its best checkpoint. All columns "
        "(every validation and test metric, checkpoint paths): `trials_joined.csv`.\n\n"
        + tables.markdown_table(text)
    )


def best_trial_sections(best: Sequence[TrialViews]) -> list[str]:
    """Per-head Recall@1, tuned evaltype weights, retrieval grid and embedding map of the best trials."""
    if not best:
        return []
    names = ", ".join(f"`{t.run_name}`" for t in best)
    parts = [
        "## The best trials through their checkpoints",
        f"Checkpoints of {names} (best validation Recall@1 first), restored and embedded again.",
        "### Recall@1 per head and evaltype",
        tables.markdown_table(percent_table(recall_by_head(best))),
        "CSV: `per_head.csv`",
    ]
    weights = weights_by_trial(best)
    if len(weights):
        tuned = next(t.tuned for t in best if t.tuned is not None)
        parts += [
            "### Evaltype weights tuned on validation data",
            f"Head weights tuned on the validation embeddings only ({tuned.n_trials} seeded TPE trials, seed "
            f"{tuned.seed}), then test Recall@1 at those weights, next to the paper weightings and each single "
            "head. The test split was embedded after the tuning ended.",
            tables.markdown_table(percent_table(weights)),
            "CSV: `evaltype_weights.csv`; for any checkpoint: `python -m analysis.evaltype_weights`.",
        ]
    parts += [
        "### Retrieval on the test split",
        f"![Retrieval grid of {best[0].run_name}](retrieval_grid.png)",
        "### Test embeddings (t-SNE)",
        f"![Embedding map of {best[0].run_name}](embedding_map.png)",
    ]
    return parts


def percent_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-trial Recall@1 table (``recall_by_head`` / ``weights_by_trial``) with percentages as text."""
    shown = format_table(frame) if "weights" in frame.columns else frame
    return frame[["trial"]].join(shown) if "trial" in frame.columns else shown


def importance_note(importance: Importance) -> str:
    """Where the importances come from and on how many trials."""
    text = f"Source: {importance.source}; {importance.evaluator} on {importance.n_trials} trials."
    return text + (f" {importance.note}." if importance.note else "")


def overview(sweep: SweepData) -> str:
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


def untested_note(sweep: SweepData) -> str:
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


def best_table(best: pd.DataFrame) -> str:
    if best.empty:
        return "No finished trial with a validation objective."
    shown = best.drop(columns=["best_run_id"]).copy()
    shown["objective"] = shown["objective"].map(lambda v: f"{v:.4f}")
    shown["objective_max"] = shown["objective_max"].map(lambda v: f"{v:.4f}")
    shown = shown.rename(columns={"objective": "val R@1 (mean)", "objective_max": "val R@1 (best run)"})
    return tables.markdown_table(shown.map(tables.format_value))


def seed_section(sweep: SweepData) -> str:
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


def comparison(sweep: SweepData, other: SweepData) -> list[str]:
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


def gains_section(trials: pd.DataFrame) -> str:
    """Each trial against its starting network (epoch 0), and the best configuration against the baseline."""
    parts = []
    starts = start_gains(trials)
    if len(starts):
        shown = starts.assign(baseline=starts["baseline"].map({True: "yes", False: ""}))
        for col in ("val R@1 start", "val R@1 best", "test R@1 start", "test R@1 selected"):
            shown[col] = shown[col].map(lambda v: "–" if pd.isna(v) else f"{100 * v:.2f}")
        shown["test ratio"] = shown["test ratio"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}x")
        shown["test gain (points)"] = shown["test gain (points)"].map(lambda v: "–" if pd.isna(v) else f"{v:+.2f}")
        parts += [
            "Every trial against its own starting network, evaluated before its first step (epoch 0: untrained "
            "on the demo, ImageNet-pretrained on the real data sets). Percent; test reported only.",
            tables.markdown_table(shown),
        ]
    base = trials[trials["baseline"]] if "baseline" in trials.columns else trials.iloc[:0]
    gain = tuning_gain(trials)
    if base.empty:
        parts.append("No run of the space's published configuration (the baseline) in this experiment.")
    elif gain is None:
        row = base.iloc[0]
        why = f", its embeddings collapsed at epoch {int(row['collapsed_epoch'])}" if pd.notna(row.get("collapsed_epoch")) else ""
        parts.append(f"The baseline run `{row['run_name']}` did not finish ({row['status']}{why}).")
    else:
        best_id, base_id, gains = gain
        labels = tables.config_labels(trials)
        lines = [f"Tuning against the baseline (the space's published configuration, `{labels.get(base_id, base_id)}`); "
                 f"best configuration by mean validation Recall@1: `{labels.get(best_id, best_id)}`."]  # fmt: skip
        names = {"objective": "validation Recall@1", "sel_test/recall_at_1": "test Recall@1 (reporting only)"}
        lines += [f"- {g.text(names[g.metric])}" for g in gains]
        if best_id == base_id:
            lines.append("- The baseline is the best configuration: tuning found nothing better.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
