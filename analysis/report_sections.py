"""Sections of the sweep report that come from the joined records and the best checkpoints (Markdown text)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis import tables
from analysis.best_trials import TrialViews, recall_by_head, weights_by_trial
from analysis.evaltype_weights import format_table
from analysis.importance import Importance

BEST_VAL, SEL_TEST = "best_val/recall_at_1", "sel_test/recall_at_1"


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
