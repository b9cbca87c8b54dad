"""Analysis of sweeps stored in MLflow: tidy DataFrames, paper tables, figures, the report command.

Reads MLflow, the sweep's stored Optuna study and the checkpoints logged in MLflow (never Ray's files).
Entry points: :func:`load_sweep` (runs, curves and the trial table of one experiment), :func:`joined_table`
(Ray trial, Optuna trial and state, MLflow run in one table), :func:`analyse_best_trials` (the best
checkpoints: per-head Recall@1, tuned evaltype weights, retrieval grid, embedding map), :mod:`analysis.tables`,
:mod:`analysis.plots`, :func:`study_importances`, ``python -m analysis.report`` and
``python -m analysis.evaltype_weights``. See docs/analysis.md.
"""

from analysis.best_trials import (
    TrialViews,
    analyse_best_trials,
    analyse_checkpoint,
    recall_by_head,
    weights_by_trial,
)
from analysis.checkpoints import best_checkpoint_trials
from analysis.importance import Importance, param_importances, study_importances
from analysis.joined import joined_table, load_study
from analysis.mlflow_io import (
    EmptyExperimentError,
    ExperimentNotFoundError,
    SweepData,
    latest_experiment,
    latest_experiments,
    list_experiments,
    load_curves,
    load_runs,
    load_sweep,
    load_trials,
)
from analysis.params import config_id
from analysis.stats import MeanCI, mean_ci, seed_summary
from analysis.tables import (
    best_configs,
    compare_table,
    config_labels,
    paper_table,
    stack_tables,
    to_latex,
    to_markdown,
    varying_params,
)
from analysis.trials import select_epochs, trial_table, wide_curves

__all__ = [
    "EmptyExperimentError",
    "TrialViews",
    "analyse_best_trials",
    "analyse_checkpoint",
    "best_checkpoint_trials",
    "joined_table",
    "latest_experiments",
    "load_study",
    "recall_by_head",
    "study_importances",
    "weights_by_trial",
    "ExperimentNotFoundError",
    "Importance",
    "MeanCI",
    "SweepData",
    "best_configs",
    "compare_table",
    "config_id",
    "config_labels",
    "latest_experiment",
    "list_experiments",
    "load_curves",
    "load_runs",
    "load_sweep",
    "load_trials",
    "mean_ci",
    "paper_table",
    "param_importances",
    "seed_summary",
    "select_epochs",
    "stack_tables",
    "to_latex",
    "to_markdown",
    "trial_table",
    "varying_params",
    "wide_curves",
]
