"""Analysis of sweeps stored in MLflow: tidy DataFrames, paper tables, figures, the report command.

Reads MLflow only (never Ray's files). Entry points: :func:`load_sweep` (runs, curves and the trial table of
one experiment), :mod:`analysis.tables`, :mod:`analysis.plots`, :func:`param_importances` and
``python -m analysis.report``. See docs/analysis.md.
"""

from analysis.importance import Importance, param_importances
from analysis.mlflow_io import (
    EmptyExperimentError,
    ExperimentNotFoundError,
    SweepData,
    latest_experiment,
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
