"""Hyper-parameter importance of a sweep with Optuna's default evaluator (PED-ANOVA in Optuna 5).

:func:`study_importances` reads the sweep's stored Optuna study (``sweep_state/optuna.db``, see
:mod:`analysis.joined`) and leaves the choice of trials to Optuna: its evaluators use the COMPLETE trials only, so
trials the scheduler stopped early (PRUNED) and failed ones do not count, and the objective is the value the
searcher told Optuna (validation Recall@1 at the last epoch).

:func:`param_importances` is for what has no study (random search, single runs): an in-memory study is built
with ``optuna.trial.create_trial`` from the trials that ran all their epochs (early-stopped ones left out, as
Optuna leaves out PRUNED ones), their varying parameters and best validation objective, with distributions
inferred from the values (numbers: their observed range, log-scaled when positive and spanning at least a
decade; everything else: categorical).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from analysis.stats import FINISHED
from analysis.tables import varying_params

LOG_SPAN = 10.0  # max/min ratio from which a positive numeric parameter is treated as log-scaled


@dataclass(frozen=True)
class Importance:
    """Normalised importances (largest first), the evaluator used, the trials used and why it may be empty."""

    values: dict[str, float] = field(default_factory=dict)
    evaluator: str = ""
    n_trials: int = 0
    note: str = ""
    source: str = ""  # "stored Optuna study" or "MLflow (no study)"


def infer_distribution(values: pd.Series) -> BaseDistribution:
    """Optuna distribution covering the observed values of one parameter."""
    clean = values.dropna()
    numeric = pd.api.types.is_numeric_dtype(clean) and not pd.api.types.is_bool_dtype(clean)
    if not numeric:
        return CategoricalDistribution(sorted({_plain(v) for v in clean}, key=str))
    low, high = float(clean.min()), float(clean.max())
    log = low > 0 and high / low >= LOG_SPAN
    if pd.api.types.is_integer_dtype(clean):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(low, high, log=log)


def param_importances(
    trials: pd.DataFrame,
    params: Sequence[str] | None = None,
    objective: str = "objective",
    mode: str = "max",
    statuses: Sequence[str] | None = FINISHED,
    evaluator: optuna.importance.BaseImportanceEvaluator | None = None,
) -> Importance:
    """Importances of the varying parameters for ``objective`` (default evaluator of the installed Optuna).

    Only trials with a status in ``statuses`` that were not stopped early count. Fewer than two usable trials
    or no varying parameter give an empty result with a ``note`` saying why.
    """
    source = "MLflow (no study)"
    pool = trials if statuses is None else trials[trials["status"].isin(statuses)]
    if "stopped_early" in pool.columns:
        pool = pool[~pool["stopped_early"].astype(bool)]
    pool = pool[np.isfinite(pool[objective].astype(float))] if objective in pool.columns else pool.iloc[:0]
    params = [p for p in (params if params is not None else varying_params(pool)) if p in pool.columns]
    params = [p for p in params if pool[p].notna().all() and pool[p].astype(str).nunique() > 1]
    name = type(evaluator).__name__ if evaluator is not None else _default_evaluator_name()
    if len(pool) < 2:
        note = f"needs at least 2 trials that ran all their epochs, with an objective; got {len(pool)}"
        return Importance({}, name, len(pool), note, source)
    if not params:
        return Importance({}, name, len(pool), "no parameter varies among the finished trials", source)
    dists = {p: infer_distribution(pool[p]) for p in params}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line for a throwaway study
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        for _, row in pool.iterrows():
            values = {p: _plain(row[p]) for p in params}
            study.add_trial(
                optuna.trial.create_trial(params=values, distributions=dists, value=float(row[objective]))
            )
        result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return Importance(dict(result), name, len(pool), "", source)


def study_importances(
    study: optuna.Study, evaluator: optuna.importance.BaseImportanceEvaluator | None = None
) -> Importance:
    """Importances from a stored study, exactly as ``optuna.importance.get_param_importances`` computes them
    (COMPLETE trials only); parameter names dotted (``model/compos_num`` -> ``model.compos_num``)."""
    name = type(evaluator).__name__ if evaluator is not None else _default_evaluator_name()
    source = "stored Optuna study"
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    counts = {s.name: sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}
    seen = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if len(complete) < 2:
        note = f"Optuna needs at least 2 COMPLETE trials, the study has {seen or 'none'}"
        return Importance({}, name, len(complete), note, source)
    try:
        result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as err:  # e.g. no parameter varies among the COMPLETE trials
        return Importance({}, name, len(complete), f"Optuna: {err}", source)
    values = {k.replace("/", "."): float(v) for k, v in result.items()}
    return Importance(values, name, len(complete), f"{len(complete)} COMPLETE trials used ({seen})", source)


def _default_evaluator_name() -> str:
    """Optuna's documented default: PED-ANOVA since 5.0, f-ANOVA before."""
    major = int(optuna.__version__.split(".")[0])
    return "PedAnovaImportanceEvaluator" if major >= 5 else "FanovaImportanceEvaluator"


def _plain(value: object) -> object:
    """numpy scalars -> Python values (Optuna's distributions compare them by equality)."""
    return value.item() if isinstance(value, np.generic) else value
