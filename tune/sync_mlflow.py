"""``python tune/run.py --name N --sync-mlflow``: complete a sweep's MLflow runs from Ray's own results.

When the MLflow server was down at the end of a sweep (or the driver died with operations buffered), MLflow misses
what Ray still holds on disk: ``<storage>/<name>/trial_<id>/result.json`` (one JSON line per report),
``params.json`` and ``error.txt``. This reads them and makes MLflow complete, through the same
:class:`tune.sweep_tracker.SweepTracker` as the live sweep: the parent run exists, every trial that reported has
exactly one child run (found by its ``ray.trial_id`` tag, else created), every (metric, epoch) of its results is
logged once (only the missing ones are sent), and runs of ended trials get their terminal status and tags.
Running it again adds nothing. No Ray runtime is started.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

from dcml_core.metric_names import EPOCH, OBJECTIVE
from dcml_core.tracking import TrackingError, check_tracking_uri
from tune.cli import SETTINGS_FILE, STATE_SUBDIR, UsageError, storage_root
from tune.mlflow_callback import error_line, final_metrics, trial_epochs, trial_params, trial_tags
from tune.sweep_tracker import ERROR_TAG, STOPPED_TAG, SweepTracker, is_outage, metrics_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


@dataclass
class TrialFiles:
    """What Ray wrote for one trial: its config, its results in report order, its error log if it failed."""

    trial_id: str
    config: dict[str, Any]
    results: list[dict[str, Any]]
    error: str | None = None


@dataclass
class SyncReport:
    """Figures of one ``--sync-mlflow`` pass."""

    trials: int = 0
    runs_created: int = 0
    present: int = 0  # (metric, step) values MLflow already held
    added: int = 0
    ended: int = 0  # runs given their terminal status
    params_added: int = 0
    parent_created: bool = False

    def text(self, name: str, uri: str) -> str:
        parent = "created" if self.parent_created else "found"
        return (
            f"Synced sweep '{name}' to MLflow {uri} (parent run {parent}): {self.trials} trials, "
            f"{self.runs_created} child run(s) created, {self.present} metric values already present, "
            f"{self.added} added, {self.params_added} params added, {self.ended} run(s) ended"
        )


def read_trials(sweep_dir: Path) -> list[TrialFiles]:
    """Every ``trial_*`` folder of a sweep (a torn last line of a result.json, from a crash, is skipped)."""
    trials = []
    for folder in sorted(p for p in sweep_dir.glob("trial_*") if p.is_dir()):
        results = []
        path = folder / "result.json"
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                results.append(json.loads(line))
            except ValueError:
                continue
        params = folder / "params.json"
        config = json.loads(params.read_text()) if params.exists() else {}
        error = folder / "error.txt"
        trial_id = next((r["trial_id"] for r in results if r.get("trial_id")), folder.name[len("trial_") :])
        trials.append(TrialFiles(trial_id, config, results, error.read_text() if error.exists() else None))
    return trials


def ray_states(sweep_dir: Path) -> dict[str, tuple[str, bool]]:
    """Trial id -> (Ray status, last result ``done``) from Tune's newest experiment-state file ({} if none)."""
    files = sorted(sweep_dir.glob("experiment_state-*.json"))  # names carry the session's start time
    try:
        rows = json.loads(files[-1].read_text())["trial_data"] if files else []
        out = {}
        for meta, run_meta in rows:
            meta, run_meta = json.loads(meta), json.loads(run_meta)
            out[meta["trial_id"]] = (meta["status"], bool((run_meta.get("last_result") or {}).get("done")))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def outcome(trial: TrialFiles, n_epochs: int, state: tuple[str, bool] | None) -> str:
    """``finished``, ``failed`` or ``unfinished``, as the live callback would have decided.

    Tune's saved status decides when there is one (ERROR: failed; TERMINATED with a final result: finished);
    without it, a final (``done``) last result or all epochs run means finished, an error log failed.
    """
    last = trial.results[-1] if trial.results else {}
    done = bool(last.get("done")) or int(last.get(EPOCH, 0)) >= n_epochs
    if state is not None:
        status, state_done = state
        if status == "ERROR":
            return "failed"
        return "finished" if status == "TERMINATED" and (state_done or done) else "unfinished"
    if done and trial.results:
        return "finished"
    return "failed" if trial.error else "unfinished"


def wanted_metrics(trial: TrialFiles, finished: bool) -> dict[tuple[str, int], Metric]:
    """(key, epoch) -> metric for every value the run should hold (the first report of an epoch wins, as live)."""
    out: dict[tuple[str, int], Metric] = {}
    for result in trial.results:
        if EPOCH not in result:
            continue
        step, stamp = int(result[EPOCH]), int(float(result.get("timestamp", 0)) * 1000)
        for key, value in metrics_of(result).items():
            out.setdefault((key, step), Metric(key, value, stamp, step))
    if finished and out:
        last, step = trial.results[-1], max(s for _, s in out)
        stamp = int(float(last.get("timestamp", 0)) * 1000)
        for key, value in final_metrics(last).items():
            out.setdefault((key, step), Metric(key, value, stamp, step))
    return out


def _sync_metrics(
    tracker: SweepTracker, run_id: str, wanted: dict[tuple[str, int], Metric]
) -> tuple[int, int]:
    """Log the wanted values MLflow lacks; returns (already present, added)."""
    present = {(key, step) for key in {k for k, _ in wanted} for step in tracker.logged_steps(run_id, key)}
    missing = [m for pair, m in sorted(wanted.items()) if pair not in present]
    tracker.log_metric_batch(run_id, missing)
    return len(wanted) - len(missing), len(missing)


def _sync_trial(tracker: SweepTracker, trial: TrialFiles, state: str, repeat_of: str | None) -> SyncReport:
    report = SyncReport(trials=1)
    params, run_id = trial_params(trial.config), tracker.run_id(trial.trial_id)
    if run_id is None:
        if not trial.results:
            return report  # never reported: the live callback would not have a run either
        tags = trial_tags(trial.config, repeat_of)
        run_id = tracker.start_trial(trial.trial_id, f"dcml_trial_{trial.trial_id}", params, tags)
        report.runs_created = 1
    else:
        logged = tracker.client.get_run(run_id).data.params
        missing = {k: v for k, v in params.items() if k not in logged}
        if missing:
            tracker.log_params(run_id, missing)
        report.params_added = len(missing)
    wanted = wanted_metrics(trial, finished=state == "finished")
    report.present, report.added = _sync_metrics(tracker, run_id, wanted)  # ended runs accept metrics too
    status = tracker.client.get_run(run_id).info.status
    # KILLED marks a run whose driver was interrupted: a later session may have ended the trial unlogged
    if status not in _TERMINAL or (status == "KILLED" and state != "unfinished"):
        if state == "failed":
            tags, end = {ERROR_TAG: error_line(trial.error)}, "FAILED"
        elif state == "finished":
            epochs = max((int(r.get(EPOCH, 0)) for r in trial.results), default=0)
            early = epochs < trial_epochs(trial.config, epochs)
            tags, end = {STOPPED_TAG: str(early).lower()}, "FINISHED"
        else:
            tags, end = {}, "KILLED"  # what the driver does at its end with runs of unfinished trials
        tracker.log_tags(run_id, tags)
        tracker.client.set_terminated(run_id, status=end)
        report.ended = 1
    return report


def sweep_metrics(trials: list[TrialFiles], states: dict[str, str]) -> dict[str, float]:
    """The counts and best scores the driver logs on the parent run at the end (without time figures)."""
    counts = {"completed": 0, "stopped_early": 0, "failed": 0}
    best: dict[str, Any] | None = None
    for trial in trials:
        last = trial.results[-1] if trial.results else {}
        if states[trial.trial_id] == "failed":
            counts["failed"] += 1
        elif states[trial.trial_id] == "finished":
            early = int(last.get(EPOCH, 0)) < trial_epochs(trial.config, int(last.get(EPOCH, 0)))
            counts["stopped_early" if early else "completed"] += 1
        value = last.get(f"best/{OBJECTIVE}")
        if isinstance(value, (int, float)) and math.isfinite(value):
            if best is None or value > best[f"best/{OBJECTIVE}"]:
                best = last
    out = {f"sweep/trials_{k}": float(v) for k, v in counts.items()}
    if best is not None:
        out["sweep/best_val_recall_at_1"] = float(best[f"best/{OBJECTIVE}"])
        test = best.get("best/test/recall_at_1")
        if isinstance(test, (int, float)) and math.isfinite(test):
            out["sweep/best_test_recall_at_1"] = float(test)
    return out


def _sync_parent(tracker: SweepTracker, trials: list[TrialFiles], states: dict[str, str], total: int) -> int:
    """Summary metrics (if the driver's never arrived) and a terminal status for a parent left RUNNING."""
    run_id = tracker.parent_run_id
    if tracker.client.get_run(run_id).info.status in _TERMINAL:
        return 0
    step = int(tracker.state.get("sessions", 1)) - 1
    stamp = int(max((float(r.get("timestamp", 0)) for t in trials for r in t.results), default=0) * 1000)
    wanted = {(k, step): Metric(k, v, stamp, step) for k, v in sweep_metrics(trials, states).items()}
    _sync_metrics(tracker, run_id, wanted)
    ended = len(trials) >= total and all(s != "unfinished" for s in states.values())
    tracker.client.set_terminated(run_id, status="FINISHED" if ended else "KILLED")
    return 1


def sync_sweep(sweep_dir: Path, settings: dict[str, Any]) -> SyncReport:
    """Make MLflow hold everything Ray recorded for the sweep in ``sweep_dir`` (settings: its sweep.json)."""
    name, uri = settings["name"], settings["mlflow_uri"]
    tracker = SweepTracker(uri, sweep_dir / STATE_SUBDIR, name)
    tracker.tolerant = False  # an outage here is an error: nothing would keep the buffer
    params = {k: v for k, v in settings.items() if k != "mlflow_uri"}
    report = SyncReport(parent_created=tracker.attach(params, {"dcml.space": settings["space"]}))
    trials, ray_state = read_trials(sweep_dir), ray_states(sweep_dir)
    states = {}
    for trial in trials:
        default_epochs = settings.get("max_epochs") or max(
            (int(r.get(EPOCH, 0)) for r in trial.results), default=0
        )
        states[trial.trial_id] = outcome(
            trial, trial_epochs(trial.config, default_epochs), ray_state.get(trial.trial_id)
        )
        part = _sync_trial(tracker, trial, states[trial.trial_id], settings.get("repeat_of"))
        for key in ("trials", "runs_created", "present", "added", "ended", "params_added"):
            setattr(report, key, getattr(report, key) + getattr(part, key))
    report.ended += _sync_parent(tracker, trials, states, int(settings.get("num_samples") or 0))
    return report


def load_sweep(name: str, storage: str | None) -> tuple[Path, dict[str, Any]]:
    """The sweep folder and saved settings of sweep ``name`` (UsageError when there is none)."""
    root = storage_root(storage, create=False)
    if "://" in root and not root.startswith("file://"):
        raise UsageError(
            f"--sync-mlflow reads Ray's results from a folder; --storage {root} is remote: copy the sweep "
            "folder to a local path (or mount it) and pass that as --storage"
        )
    sweep_dir = Path(root.removeprefix("file://")) / name
    settings_path = sweep_dir / STATE_SUBDIR / SETTINGS_FILE
    if not settings_path.exists():
        raise UsageError(
            f"--sync-mlflow: no sweep '{name}' in {root} ({settings_path} missing); check --name and --storage"
        )
    return sweep_dir, json.loads(settings_path.read_text())


def sync_command(args: argparse.Namespace) -> int:
    """``tune/run.py --sync-mlflow``: print the figures; exit 2 for bad input, 1 if MLflow fails midway."""
    try:
        sweep_dir, settings = load_sweep(args.name, args.storage)
        if args.space and args.space != settings["space"]:
            raise UsageError(
                f"sweep '{args.name}' was run with --space {settings['space']}, not {args.space}"
            )
        check_tracking_uri(settings["mlflow_uri"])
        report = sync_sweep(sweep_dir, settings)
    except Exception as err:
        if is_outage(err) and not isinstance(err, (UsageError, TrackingError)):
            print(
                f"error: MLflow {settings['mlflow_uri']} failed during the sync ({err}); what was sent is kept, "
                "run the same command again",
                file=sys.stderr,
            )
            return EXIT_FAILED
        if not isinstance(err, (UsageError, TrackingError, OSError, ValueError)):
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(report.text(settings["name"], settings["mlflow_uri"]), flush=True)
    return EXIT_OK
