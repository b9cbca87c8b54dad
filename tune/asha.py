"""ASHA that lets the baseline trial (the space's published configuration) run its whole schedule.

Every sweep answers "what did tuning gain over the published configuration?" (the summary, the report). That
answer needs the baseline's result at the end of its schedule: compared at epoch 1 with trials trained for 12
epochs, any configuration looks like a gain. So ASHA records the baseline's value at every rung, as it does for
every trial (it still raises the cutoffs for the others), but never stops it. The price is one full-length trial
per sweep.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tune.trial_run import is_baseline


class BaselineKeepingASHA(ASHAScheduler):
    """``ASHAScheduler`` whose STOP decisions skip the trial whose config is the space's ``baseline``."""

    def __init__(self, *, baseline: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.baseline = dict(baseline or {})

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        early = result.get(self._time_attr, self._max_t) < self._max_t
        if action == TrialScheduler.STOP and early and is_baseline(trial.config, self.baseline):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action
