"""The best trials of a sweep seen through their checkpoints: Recall@1 per head and evaltype, tuned evaltype
weights, and the test split's retrieval grid and embedding map (used by the report and the notebooks).

For each of the best trials that logged a checkpoint (:mod:`analysis.checkpoints`): restore the engine, embed
the validation split, tune the head weights on it (:mod:`analysis.evaltype_weights`; models with one head skip
this), and only then embed the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis import views
from analysis.checkpoints import best_checkpoint_trials, local_checkpoint
from analysis.embeddings import (
    SUBEMBEDDINGS,
    SplitEmbeddings,
    embed_split,
    embedding_of,
    load_engine,
    recall_table,
)
from analysis.evaltype_weights import (
    DEFAULT_TRIALS,
    TunedWeights,
    WeightComparison,
    check_weightable,
    compare_weightings,
)
from analysis.mlflow_io import SweepData
from dcml_core.evaluation import evaltype_key


@dataclass(frozen=True)
class TrialViews:
    """One trial's checkpoint, evaluated: its Recall@1 table, tuned weights (if any) and test embeddings."""

    run_id: str
    run_name: str
    objective: float  # best validation Recall@1 logged by the sweep
    checkpoint: Path
    primary: str  # the evaltype the model was selected with (its first configured evaltype)
    table: pd.DataFrame  # evaltype, name, kind, val R@1, test R@1[, weights]
    tuned: TunedWeights | None  # None for a single-head model
    test: SplitEmbeddings

    @property
    def primary_name(self) -> str:
        """Short name of the primary evaltype (``combined_0.5-1-1-1``, ``discriminative``)."""
        return self.primary if self.primary == SUBEMBEDDINGS else evaltype_key(self.primary)

    def retrieval_grid(self, n_queries: int = 8, k: int = 6, seed: int = 0) -> Figure:
        """Test queries and their nearest neighbours under the primary evaltype."""
        title = f"{self.run_name}: retrieval with {self.primary_name}"
        embedding = embedding_of(self.test.heads, self.primary)
        return views.retrieval_grid(self.test, embedding, n_queries=n_queries, k=k, seed=seed, title=title)

    def embedding_map(self, max_points: int = 3000, seed: int = 0) -> Figure:
        """t-SNE of the test embeddings under the primary evaltype, coloured by class."""
        title = f"{self.run_name}: test embeddings ({self.primary_name})"
        embedding = embedding_of(self.test.heads, self.primary)
        return views.embedding_map(self.test, embedding, max_points=max_points, seed=seed, title=title)


def analyse_checkpoint(
    checkpoint: str | Path,
    data_root: str | None = None,
    device: str | None = None,
    n_trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    run_id: str = "",
    run_name: str = "",
    objective: float = float("nan"),
) -> TrialViews:
    """Evaluate one checkpoint (val embedded and weights tuned before the test split is embedded)."""
    engine = load_engine(checkpoint, data_root, device=device)
    primary = engine.evaltypes()[0]
    try:
        check_weightable(engine.cfg)
    except ValueError:  # one head (or DCML sub-embeddings): nothing to weight, evaluate what there is
        val, test = embed_split(engine, "val"), embed_split(engine, "test")
        rows = [(e, "configured") for e in engine.evaltypes()] + [(h, "head") for h in val.heads]
        rows = list(dict.fromkeys(rows))
        table, tuned = recall_table([val, test], rows), None
    else:
        result: WeightComparison = compare_weightings(engine, n_trials=n_trials, seed=seed)
        table, tuned, test = result.table, result.tuned, result.test
    return TrialViews(run_id, run_name, objective, Path(checkpoint), primary, table, tuned, test)


def analyse_best_trials(
    sweep: SweepData,
    k: int = 3,
    data_root: str | None = None,
    device: str | None = None,
    n_trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> list[TrialViews]:
    """:func:`analyse_checkpoint` for the ``k`` best trials with a logged checkpoint, best first."""
    best = best_checkpoint_trials(sweep, k)
    return [
        analyse_checkpoint(
            local_checkpoint(row.checkpoint, sweep.tracking_uri, cache_dir),
            data_root,
            device,
            n_trials,
            seed,
            row.run_id,
            row.run_name,
            float(row.objective),
        )
        for row in best.itertuples()
    ]


def recall_by_head(trials: Sequence[TrialViews]) -> pd.DataFrame:
    """Per trial: Recall@1 on val and test of each single head and each configured evaltype (long table)."""
    parts = [t.table[t.table["kind"].isin(["head", "configured"])].assign(trial=t.run_name) for t in trials]
    return _stack(parts)


def weights_by_trial(trials: Sequence[TrialViews]) -> pd.DataFrame:
    """Per trial: the tuned weights, the paper weightings and each single head, val and test Recall@1."""
    parts = [
        t.table[~t.table["kind"].isin(["configured"])].assign(trial=t.run_name) for t in trials if t.tuned
    ]
    return _stack(parts)


def _stack(parts: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["trial", "kind", "name", "weights", "val R@1", "test R@1"]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    if "weights" not in out.columns:
        out["weights"] = None
    return out[columns]
