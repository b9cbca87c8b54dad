"""OptunaSearch that tells Optuna the truth about trials a scheduler stopped early.

Ray's ``OptunaSearch.on_trial_complete`` reports every trial with a metric as ``COMPLETE`` (ecosystem.md
§1.4), so TPE takes the Recall@1 of a trial ASHA stopped at its first rung for a final score. Here a trial
that ends without error before its last epoch is told as ``PRUNED`` (Optuna keeps its per-epoch intermediate
values, which TPE uses for pruned trials), an error as ``FAIL``, and only a trial that ran all its epochs as
``COMPLETE``. Intermediate values are reported with ``step = epoch`` and never twice for the same step,
including the result a trial was stopped on (Tune does not pass that one to ``on_trial_result``). Each Optuna
trial records its Ray trial id as the user attribute ``ray_trial_id`` (joins the study to Ray and MLflow).

The space's baseline (its published configuration) is enqueued as the study's first trial, once (a resumed
sweep does not enqueue it again), marked with the user attribute ``dcml_baseline``. A trial whose embeddings
collapsed is told with the constraint ``embedding_collapse`` violated: Optuna's TPE ranks infeasible trials below
every feasible one, so the collapse counts as what it is instead of as a low Recall@1.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from dcml_core.collapse import COLLAPSED_KEY
from dcml_core.metric_names import EPOCH
from dcml_core.tracking import RAY_TRIAL_ATTR
from tune.trial_outcome import STOPPED_EARLY, outcome

logger = logging.getLogger(__name__)
BASELINE_ATTR, COLLAPSE_CONSTRAINT = "dcml_baseline", "embedding_collapse"


def study_storage(path: str) -> optuna.storages.RDBStorage:
    """SQLite storage of the sweep's study, next to the sweep so that it survives restarts."""
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


class PrunedAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with PRUNED for scheduler-stopped trials (see the module docstring)."""

    def __init__(
        self, *args: Any, max_t: int, time_attr: str = EPOCH, baseline: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.baseline = {k.replace(".", "/"): v for k, v in (baseline or {}).items()}  # Optuna names: "model/M"
        super().__init__(*args, **kwargs)
        self.max_t = max_t
        self.time_attr = time_attr
        self._reported: dict[str, set[int]] = {}

    def _setup_study(self, mode: str | list[str]) -> None:
        super()._setup_study(mode)
        if self.baseline:
            self._ot_study.enqueue_trial(self.baseline, user_attrs={BASELINE_ATTR: True}, skip_if_exists=True)

    def suggest(self, trial_id: str) -> dict | None:
        """Ray's suggestion; the Optuna trial it asked for records ``trial_id`` (:data:`RAY_TRIAL_ATTR`)."""
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Report the objective as an intermediate value at ``step = epoch`` (once per step)."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value = result.get(self.metric)
        step = result.get(self.time_attr)
        if value is None or step is None or not math.isfinite(float(value)):
            return
        seen = self.__dict__.setdefault("_reported", {}).setdefault(trial_id, set())
        if int(step) in seen:
            return
        seen.add(int(step))
        self._ot_trials[trial_id].report(float(value), int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna COMPLETE (all epochs run), PRUNED (stopped early by the scheduler) or FAIL (error)."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result and not error:
            self.on_trial_result(trial_id, result)  # Tune skips on_trial_result for the result it stops on
        state, value = self.final_state(result, error)
        if result and result.get(COLLAPSED_KEY) and not error:
            self._ot_trials[trial_id].set_constraint(COLLAPSE_CONSTRAINT, 1.0)  # > 0: infeasible
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except Exception as exc:  # noqa: BLE001 - Optuna refuses e.g. a NaN value; keep the sweep going
            logger.warning("Optuna refused the result of trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def final_state(self, result: dict | None, error: bool) -> tuple[TrialState, float | None]:
        """The Optuna state and value for a trial that ended with ``result`` (its last result)."""
        if error:
            return TrialState.FAIL, None
        result = result or {}
        value, done = result.get(self.metric), result.get(self.time_attr)
        if value is None or not math.isfinite(float(value)):
            return TrialState.PRUNED, None  # nothing usable to tell; Optuna keeps any intermediate values
        if done is not None and outcome("TERMINATED", True, int(done), self.max_t) == STOPPED_EARLY:
            return TrialState.PRUNED, None  # Optuna records the last intermediate value as the trial's value
        return TrialState.COMPLETE, float(value)
