"""``python -m analysis.evaltype_weights``: tune the head weights of a DiVA/DCML checkpoint on validation data.

DiVA and DCML evaluate a weighted concatenation of their heads, ``n(concat(w1 n(h1), ..., wk n(hk)))``
(algorithms.md §2.5), with weights the original authors chose on the test set (CUB (0.5, 1, 1, 1), CARS
(0.5, 2, 2, 2), SOP (1, 1, 1, 1)). Here the weights are tuned after training on the **validation** embeddings
only (seeded Optuna TPE, Recall@1), then test Recall@1 is reported at the tuned weights next to the paper
weightings, the configured evaltypes and each single head.

Order of work, which keeps the test split out of the tuning: embed the validation split, tune, and only then
embed the test split (:func:`compare_weightings`). :func:`tune_weights` itself sees nothing but validation
embeddings.

Only weight ratios matter: the first head's weight is fixed to 1, the others range over [0.1, 10] (log scale)
and are rounded to 3 significant digits before each evaluation, so the weights shown are exactly the ones
evaluated (e.g. ``1, 2, 2, 2``: the paper's CUB weighting (0.5, 1, 1, 1) written relative to its first head).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd

from analysis.embeddings import (
    SUBEMBEDDINGS,
    SplitEmbeddings,
    checkpoint_config,
    embed_split,
    load_engine,
    recall_at_1,
    recall_table,
)
from dcml_core.checkpoint import CheckpointError
from dcml_core.config import ExperimentConfig
from dcml_core.engine import Engine
from dcml_core.evaluation import HEAD_ORDER, PAPER_WEIGHTS, combine_heads, combined_spec

RATIO_RANGE = (0.1, 10.0)  # weight of every head but the first, relative to the first
DEFAULT_TRIALS = 100
PAPER_DATASETS = {"paper_cub": "CUB", "paper_cars": "CARS", "paper_sop": "SOP"}
TUNED = "tuned on val"


@dataclass(frozen=True)
class TunedWeights:
    """Weights found on the validation split, their validation Recall@1 and how they were found."""

    heads: tuple[str, ...]
    weights: tuple[float, ...]  # the first head's is 1; 3 significant digits
    val_recall_at_1: float  # at exactly these weights
    n_trials: int
    seed: int

    @property
    def spec(self) -> str:
        """The evaltype string (``Combined_<h1>_<h2>-<w1>-<w2>``) of the tuned weights."""
        return combined_spec(self.heads, self.weights)


@dataclass(frozen=True)
class WeightComparison:
    """The tuned weights and the table comparing them with the paper weightings, evaltypes and single heads."""

    tuned: TunedWeights
    table: pd.DataFrame  # evaltype, name, kind, val R@1, test R@1 (test evaluated after tuning)
    val: SplitEmbeddings
    test: SplitEmbeddings


def check_weightable(cfg: ExperimentConfig) -> list[str]:
    """The heads of a configuration whose weights can be tuned; ValueError saying why when there are none."""
    if cfg.model.method == "dcml" and cfg.model.eval_on == SUBEMBEDDINGS:
        raise ValueError(
            "this DCML checkpoint is evaluated on its sub-embeddings (model.eval_on='subembeddings'): there is "
            "no combination of heads to weight"
        )
    heads = list(cfg.model.features)
    if len(heads) < 2:
        raise ValueError(
            f"the checkpoint's model has {len(heads)} head ({heads}); weights combine two or more heads: use a "
            "DiVA or DCML checkpoint (model.features with several heads)"
        )
    return heads


def _ratios(trial: optuna.trial.BaseTrial, heads: Sequence[str]) -> list[float]:
    """The weights a trial stands for: 1 for the first head, the suggested ratios to 3 significant digits."""
    return [1.0] + [float(f"{trial.suggest_float(h, *RATIO_RANGE, log=True):.3g}") for h in heads[1:]]


def tune_weights(
    val: SplitEmbeddings,
    n_trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    heads: Sequence[str] | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> TunedWeights:
    """Weights of ``heads`` (default: all) maximising Recall@1 on the validation embeddings ``val``.

    Seeded TPE; equal weights and every paper weighting that applies are tried first, so a tie keeps them.
    ``callbacks`` are Optuna study callbacks (called after each trial).
    """
    if val.split != "val":
        raise ValueError(f"weights are tuned on the validation split only, got the {val.split!r} split")
    heads = list(heads or val.heads)
    if len(heads) < 2:
        raise ValueError(f"tuning weights needs two or more heads, got {heads}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials}")

    def objective(trial: optuna.Trial) -> float:
        return recall_at_1(combine_heads(val.heads, heads, _ratios(trial, heads)), val.labels)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        for start in _starting_points(heads):
            study.enqueue_trial(dict(zip(heads[1:], start[1:])))
        study.optimize(objective, n_trials=n_trials, callbacks=list(callbacks))
    finally:
        optuna.logging.set_verbosity(verbosity)
    best = study.best_trial
    return TunedWeights(tuple(heads), tuple(_ratios(best, heads)), float(best.value), n_trials, seed)


def _starting_points(heads: Sequence[str]) -> list[tuple[float, ...]]:
    """Equal weights, then each paper weighting (as ratios to the first head) when the heads are the paper's."""
    points = [tuple(1.0 for _ in heads)]
    if set(heads) == set(HEAD_ORDER):
        for ws in PAPER_WEIGHTS.values():
            by_head = dict(zip(HEAD_ORDER, ws))
            points.append(tuple(by_head[h] / by_head[heads[0]] for h in heads))
    low, high = RATIO_RANGE
    return [p for i, p in enumerate(points) if p not in points[:i] and all(low <= r <= high for r in p[1:])]


def paper_weightings(heads: Sequence[str]) -> dict[str, str]:
    """``{evaltype: "paper CUB (0.5, 1, 1, 1)"}`` for the paper weightings that apply to these heads."""
    if not set(HEAD_ORDER) <= set(heads):
        return {}
    return {
        combined_spec(HEAD_ORDER, ws): f"paper {PAPER_DATASETS[name]} ({', '.join(f'{w:g}' for w in ws)})"
        for name, ws in PAPER_WEIGHTS.items()
    }


def compare_weightings(
    engine: Engine,
    n_trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> WeightComparison:
    """Embed val, tune the weights on it, then embed test and tabulate Recall@1 of every weighting.

    Table rows (in this order): the tuned weights, the paper weightings that apply, the evaltypes the model was
    evaluated with during training, and each single head; columns ``evaltype, name, kind, val R@1, test R@1,
    weights``.
    """
    heads = check_weightable(engine.cfg)
    val = embed_split(engine, "val")
    tuned = tune_weights(val, n_trials=n_trials, seed=seed, heads=heads, callbacks=callbacks)
    test = embed_split(engine, "test")  # only now: nothing above read the test split
    rows = [(tuned.spec, TUNED), *[(spec, label) for spec, label in paper_weightings(heads).items()]]
    rows += [(e, "configured") for e in engine.evaltypes()] + [(h, "head") for h in val.heads]
    table = recall_table([val, test], rows)
    table["weights"] = table["evaltype"].map(_weights_text)
    return WeightComparison(tuned, table.reset_index(drop=True), val, test)


def _weights_text(spec: str) -> str:
    if not spec.startswith("Combined_"):
        return "1 (single head)"
    return ", ".join(spec.split("-")[1:])


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display form: percentages with 2 decimals, the columns a reader needs."""
    shown = table[["kind", "name", "weights", "val R@1", "test R@1"]].copy()
    for col in ("val R@1", "test R@1"):
        shown[col] = shown[col].map(lambda v: "–" if not math.isfinite(v) else f"{100 * v:.2f}")
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 with one error line on bad input)."""
    from analysis import tables
    from analysis.checkpoints import best_checkpoint_trials, local_checkpoint
    from analysis.mlflow_io import EmptyExperimentError, ExperimentNotFoundError, load_sweep

    parser = argparse.ArgumentParser(
        prog="python -m analysis.evaltype_weights", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint folder (state.pt + config.json)")
    source.add_argument("--experiment", help="an MLflow experiment (sweep): its best logged checkpoints")
    parser.add_argument(
        "--tracking-uri", default=None, help="with --experiment: sqlite:///PATH, http://... or a folder"
    )
    parser.add_argument(
        "--top-k", type=int, default=1, help="with --experiment: the best K trials (default 1)"
    )
    parser.add_argument(
        "--data-root", default=None, help="dataset folder (default: the one the checkpoint used)"
    )
    parser.add_argument(
        "--n-trials", type=int, default=DEFAULT_TRIALS, help=f"Optuna trials (default {DEFAULT_TRIALS})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    parser.add_argument("--csv", default=None, help="also write the table(s) to this CSV file")
    args = parser.parse_args(argv)
    try:
        if args.n_trials < 1:
            raise ValueError(f"--n-trials must be a positive integer, got {args.n_trials}")
        if args.top_k < 1:
            raise ValueError(f"--top-k must be a positive integer, got {args.top_k}")
        if args.data_root and not Path(args.data_root).is_dir():
            raise FileNotFoundError(f"--data-root {args.data_root} is not a folder")
        if args.checkpoint:
            sources = [("checkpoint", Path(args.checkpoint))]
        else:
            sweep = load_sweep(args.experiment, args.tracking_uri)
            best = best_checkpoint_trials(sweep, args.top_k)
            if best.empty:
                raise FileNotFoundError(
                    f"no run of experiment '{args.experiment}' logged a checkpoint artifact"
                )
            sources = [
                (r.run_name, local_checkpoint(r.checkpoint, sweep.tracking_uri)) for r in best.itertuples()
            ]
        for _, path in sources:  # every input checked before any model is built
            check_weightable(checkpoint_config(path, args.data_root))
        parts = []
        for name, path in sources:
            result = compare_weightings(load_engine(path, args.data_root), args.n_trials, args.seed)
            print(
                f"\n{name} ({path}): weights tuned on {len(result.val)} validation images, {args.n_trials} trials"
            )
            print(tables.markdown_table(format_table(result.table)))
            parts.append(result.table.assign(source=name, checkpoint=str(path)))
    except (
        ExperimentNotFoundError,
        EmptyExperimentError,
        FileNotFoundError,
        ValueError,
        CheckpointError,
    ) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    if args.csv:
        pd.concat(parts, ignore_index=True).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
