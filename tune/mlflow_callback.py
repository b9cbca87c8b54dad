"""The Tune callback that hands a sweep's trials to its MLflow writer, in the driver (the only writer). Not
``MLflowLoggerCallback`` (a new run for a resumed trial, no nesting) nor ``setup_mlflow`` (every worker writes:
a SQLite store does not survive it). Tune pickles the callback into ``tuner.pkl``: it keeps plain settings, and
the driver and a callback restored with the sweep share the writer of the process (:func:`writer_for`)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from tune.mlflow_writer import SweepWriter
from tune.trial_outcome import FAILED, UNFINISHED, error_summary, planned_epochs, result_outcome
from tune.trial_run import TrialLog

_WRITERS: dict[tuple[str, str], SweepWriter] = {}


def writer_for(
    uri: str, sweep: str, sampled: tuple = (), repeat_of: str | None = None, baseline: dict | None = None
) -> SweepWriter:
    """The driver's writer of a sweep (one per tracking URI and sweep name)."""
    if (uri, sweep) not in _WRITERS:
        _WRITERS[uri, sweep] = SweepWriter(uri, sweep, tuple(sampled), repeat_of, baseline)
    return _WRITERS[uri, sweep]


class MLflowSweepCallback(Callback):
    """Each trial's configuration, per-epoch metrics (step = epoch) and end go to its nested child run."""

    def __init__(
        self, uri: str, sweep: str, max_epochs: int, sampled: tuple = (), repeat_of: str | None = None, baseline=None
    ):
        self.uri, self.sweep, self.max_epochs, self.sampled, self.repeat_of = uri, sweep, max_epochs, sampled, repeat_of
        self.baseline = dict(baseline or {})

    @property
    def writer(self) -> SweepWriter:
        return writer_for(self.uri, self.sweep, self.sampled, self.repeat_of, getattr(self, "baseline", None))

    def _log(self, trial: Any) -> TrialLog:
        return self.writer.pending.get(trial.trial_id) or TrialLog(trial.trial_id, trial.config)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.writer.submit(self._log(trial))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.writer.flush(force=False)  # retry what an outage kept (rate-limited) even between results

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        log = self._log(trial)
        log.add(result)
        self.writer.submit(log)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "TERMINATED", done=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "ERROR", done=False)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """End the runs of trials that ended while no driver watched (e.g. just before a crash); trials Tune
        stopped on Ctrl-C are unfinished (the driver sets their runs KILLED; ``--resume`` continues them)."""
        for trial in trials:
            self._end(trial, trial.status, done=bool((trial.last_result or {}).get("done")))
        self.writer.flush()  # last try before the driver's summary

    def _end(self, trial: Any, status: str, done: bool) -> None:
        last = trial.last_result or {}
        how = result_outcome(status, last, planned_epochs(trial.config, self.max_epochs), done=done)
        seen = trial.trial_id in self.writer.runs or trial.trial_id in self.writer.pending
        if how != UNFINISHED and (last or seen):  # (unfinished: still to run; neither: never started)
            log = self._log(trial)
            log.finish(how, last, error_summary(trial) if how == FAILED else "")
            self.writer.submit(log)
