"""Driver-side Tune callback writing a sweep to MLflow through :class:`tune.sweep_tracker.SweepTracker`.

Why not ``MLflowLoggerCallback`` or ``setup_mlflow``: the former opens a new run for a resumed trial
(duplicates, the old one left RUNNING) and cannot nest; the latter writes from every worker, which a SQLite
store does not survive. This callback is the single writer, in the driver. Tune pickles it into ``tuner.pkl``,
so it keeps only plain settings; the tracker is shared per state directory (:func:`tracker_for`) and rebuilt
after a restore.

An MLflow outage does not stop the sweep: the tracker buffers what it could not log (warning once), the callback
retries on Tune's loop steps (at most every ``SweepTracker.retry_interval`` seconds) and once more at the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.tune import Callback

from dcml_core.config import ExperimentConfig
from dcml_core.metric_names import EPOCH
from tune.cli import REPEAT_KEY, trial_config
from tune.sweep_tracker import ERROR_TAG, STOPPED_TAG, SweepTracker, metrics_of

_TRACKERS: dict[str, SweepTracker] = {}


def tracker_for(tracking_uri: str, state_dir: str | Path, sweep_name: str) -> SweepTracker:
    """The process-wide tracker of a sweep (one per state directory, so one writer of its state file)."""
    key = str(Path(state_dir).resolve())
    tracker = _TRACKERS.get(key)
    if tracker is None or tracker.tracking_uri != tracking_uri:
        tracker = _TRACKERS[key] = SweepTracker(tracking_uri, state_dir, sweep_name)
    return tracker


def trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """MLflow params of a trial: ``ExperimentConfig.flat()`` (same keys in every space), or the raw config."""
    try:
        return ExperimentConfig.from_dict(trial_config(config)).flat()
    except ValueError:  # the trial will fail on the same config; still record what it was given
        return {"raw_config": config}


def trial_epochs(config: dict[str, Any], default: int) -> int:
    """The number of epochs a trial was configured for."""
    return int(trial_config(config).get("schedule", {}).get("n_epochs", default))


def trial_tags(config: dict[str, Any], repeat_of: str | None) -> dict[str, str]:
    """Extra tags of a trial's run: in a seed-repeat sweep ``dcml.repeat_of`` and ``dcml.config_id``."""
    if repeat_of is None or not isinstance(config.get(REPEAT_KEY), dict):
        return {}
    from analysis.repeats import repeat_tags

    return repeat_tags(repeat_of, config[REPEAT_KEY])


def error_line(text: str | None, limit: int = 500) -> str:
    """Last line of a traceback (the exception), shortened for a tag."""
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "trial failed (see the trial's error.txt)")[:limit]


def error_summary(trial: Any, limit: int = 500) -> str:
    """Last line of a failed trial's latest traceback (the exception), shortened for a tag.

    Read from the driver's own error file when there is one: ``Trial.get_error`` reads the storage copy, which
    is synced later and can still hold only an earlier attempt's error.
    """
    text = None
    local = getattr(trial, "error_file", None)  # the driver writes here first; storage gets a copy later
    try:
        if isinstance(local, (str, os.PathLike)) and os.path.isfile(local):
            text = Path(local).read_text(errors="replace")
        else:
            text = trial.get_error()
    except Exception:  # noqa: BLE001 - storage unavailable: fall back to a generic reason
        text = None
    return error_line(text, limit)


def final_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The ``final/val/*`` metrics a finished trial's run gets from its last result."""
    return {
        f"final/{k}": v
        for k, v in metrics_of(result).items()
        if k.startswith("val/") and not k.endswith("eval_time_s")
    }


class MLflowSweepCallback(Callback):
    """Writes each trial to its nested child run: params, per-epoch metrics (step = epoch), final state."""

    def __init__(
        self,
        tracking_uri: str,
        state_dir: str | Path,
        sweep_name: str,
        max_epochs: int,
        repeat_of: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.state_dir = str(Path(state_dir).resolve())
        self.sweep_name = sweep_name
        self.max_epochs = max_epochs
        self.repeat_of = repeat_of  # seed-repeat sweep: the original sweep, tagged on every child run

    @property
    def tracker(self) -> SweepTracker:
        return tracker_for(self.tracking_uri, self.state_dir, self.sweep_name)

    @property
    def _started(self) -> set[str]:  # trials whose run this driver has (re)opened (or buffered the opening)
        return self.__dict__.setdefault("_started_ids", set())

    def _ensure_run(self, trial: Any) -> None:
        started = self._started
        if trial.trial_id not in started:
            self.tracker.start_trial(
                trial.trial_id,
                str(trial),
                trial_params(trial.config),
                tags=trial_tags(trial.config, getattr(self, "repeat_of", None)),
            )
            started.add(trial.trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ensure_run(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.tracker.flush(force=False)  # retry buffered operations (rate-limited) even between results

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._ensure_run(trial)
        self.tracker.log_result(trial.trial_id, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, error=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Close the runs of trials that ended while no driver was watching (e.g. just before a crash).

        Only trials whose last result says ``done`` really ended: when the sweep is interrupted (Ctrl-C), Tune
        marks the trials it stops TERMINATED too, and those continue after ``--resume``.
        """
        for trial in trials:
            if trial.status == "TERMINATED" and (trial.last_result or {}).get("done"):
                self._end(trial, error=False)
            elif trial.status == "ERROR":
                self._end(trial, error=True)
        self.tracker.flush()  # last try before the driver's summary (which prints what is still pending)

    def _end(self, trial: Any, error: bool) -> None:
        known = trial.trial_id in self._started or trial.trial_id in self.tracker.state["trials"]
        if not known:  # (the state file lists every run of this sweep, whichever driver opened it)
            if not trial.last_result:
                return  # never started: nothing to close
            self._ensure_run(trial)
        result = trial.last_result or {}
        if error:
            self.tracker.end_trial(trial.trial_id, "FAILED", {ERROR_TAG: error_summary(trial)})
            return
        epochs_done = int(result.get(EPOCH, 0))
        early = epochs_done < trial_epochs(trial.config, self.max_epochs)
        tags = {STOPPED_TAG: str(early).lower()}
        self.tracker.end_trial(trial.trial_id, "FINISHED", tags, final_metrics(result))

    def __getstate__(self) -> dict[str, Any]:  # only plain settings go into tuner.pkl
        return {k: v for k, v in self.__dict__.items() if k not in ("_started", "_started_ids")}
