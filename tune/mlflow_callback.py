"""The Tune callback that hands a sweep's trials to its MLflow writer, in the driver (the only writer). Not
``MLflowLoggerCallback`` (a new run for a resumed trial, no nesting) nor ``setup_mlflow`` (every worker writes:
a SQLite store does not survive it). Tune pickles the callback into ``tuner.pkl``: it keeps plain settings, and
the driver and a callback restored with the sweep share the writer of the process (:func:`writer_for`)."""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

from dcml_core.metric_names import OBJECTIVE
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


BEST_VAL = f"best/{OBJECTIVE}"
ENDED = ("TERMINATED", "ERROR")


def certain_top(ended: list[tuple[str, float]], remaining: int, k: int) -> list[str]:
    """The ended trials (``(trial id, best validation objective)`` in Tune's trial order) that are among the ``k``
    best of the sweep whatever the ``remaining`` trials score: ranked as the summary ranks (best first, ties in
    trial order, no score last), the one at rank r can end no lower than r + remaining."""
    scored = sorted((t for t in ended if not math.isnan(t[1])), key=lambda t: -t[1])
    return [trial_id for rank, (trial_id, _) in enumerate(scored, 1) if rank + remaining <= k]


class MLflowSweepCallback(Callback):
    """Each trial's configuration, per-epoch metrics (step = epoch) and end go to its nested child run; the best
    checkpoints of the ``top_k`` best trials (of ``total`` trials) go to their runs as soon as no trial still
    running or to come can push them out of the top ``top_k`` (the driver uploads the rest after the sweep)."""

    def __init__(
        self, uri: str, sweep: str, max_epochs: int, sampled: tuple = (), repeat_of: str | None = None, baseline=None,
        top_k: int = 0, total: int = 0,
    ):  # fmt: skip
        self.uri, self.sweep, self.max_epochs, self.sampled, self.repeat_of = uri, sweep, max_epochs, sampled, repeat_of
        self.baseline = dict(baseline or {})
        self.top_k, self.total = top_k, total
        self.best_checkpoints: dict[str, tuple[float, Any]] = {}  # trial id -> (objective, its checkpoint)

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

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        """Keep the trial's best checkpoint: the one reported with its best validation objective (the
        checkpoints are scored by it, so Tune never deletes that one)."""
        score = (trial.last_result or {}).get(OBJECTIVE)
        kept = self.__dict__.setdefault("best_checkpoints", {})  # (a callback pickled before it had them)
        if score is not None and (trial.trial_id not in kept or score > kept[trial.trial_id][0]):
            kept[trial.trial_id] = (float(score), checkpoint)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "TERMINATED", done=True)
        self._upload_certain(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "ERROR", done=False)
        self._upload_certain(trials, trial)

    def _upload_certain(self, trials: list, ending: Any) -> None:
        """Upload the best checkpoint of every ended trial that is certain to be among the ``top_k`` best, while
        the last trials still run (see :func:`certain_top`)."""
        top_k, total = getattr(self, "top_k", 0), getattr(self, "total", 0)  # (a callback pickled before them)
        kept = self.__dict__.get("best_checkpoints", {})
        if not top_k or not total or not kept:
            return
        ended = [t for t in trials if t is ending or t.status in ENDED]
        scores = [(t.trial_id, float((t.last_result or {}).get(BEST_VAL, math.nan))) for t in ended]
        for trial_id in certain_top(scores, total - len(ended), top_k):
            if trial_id in self.writer.checkpoints_uploaded or trial_id not in kept:
                continue
            trial = next(t for t in ended if t.trial_id == trial_id)
            with kept[trial_id][1].as_directory() as directory:
                log = self._log(trial)
                log.checkpoint = directory
                self.writer.submit(log)

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
