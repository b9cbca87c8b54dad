"""``python tune/run.py --name N --sync-mlflow``: make MLflow hold what Ray recorded for a sweep.

After an MLflow outage that outlasted the sweep (or its driver), MLflow misses what Ray holds on disk: each
``trial_<id>/result.json``, ``params.json``, ``error.txt`` and Tune's ``experiment_state-*.json`` (how each trial
ended). They are replayed through the sweep's idempotent :class:`~tune.mlflow_writer.SweepWriter` (a child run
per trial that reported, the epochs it lacks, the ends, the parent's summary): a second run adds nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import search_spaces
from dcml_core.metric_names import EPOCH
from tune.mlflow_writer import TERMINAL, SweepWriter
from tune.summary import BEST_TEST, BEST_VAL, TrialRecord, sweep_metrics
from tune.trial_outcome import UNFINISHED, error_line, planned_epochs, result_outcome
from tune.trial_run import TrialLog


def read_trial(folder: Path, saved: dict[str, tuple[str, bool]], max_epochs: int | None) -> tuple[TrialLog, TrialRecord]:
    """What Ray wrote for one trial (a torn last line of result.json, from a crash, is skipped), as the log for
    MLflow and the record of its end (decided from Tune's saved status when there is one, else from its
    results: a final result or all epochs run ended it, an error log failed it)."""
    files = ("result.json", "params.json", "error.txt")
    text = {name: (folder / name).read_text() if (folder / name).exists() else "" for name in files}
    results = []
    for line in text["result.json"].splitlines():
        try:
            results.append(json.loads(line))
        except ValueError:
            continue
    config, errors = json.loads(text["params.json"] or "{}"), text["error.txt"] or None
    trial_id = next((r["trial_id"] for r in results if r.get("trial_id")), folder.name.removeprefix("trial_"))
    last = results[-1] if results else {}
    epochs = int(last.get(EPOCH, 0))
    n_epochs = planned_epochs(config, max_epochs or max((int(r.get(EPOCH, 0)) for r in results), default=0))
    done = bool(last.get("done")) or (bool(results) and epochs >= n_epochs)
    status, saved_done = saved.get(trial_id) or ("ERROR" if errors and not done else "TERMINATED", done)
    how = result_outcome(status, last, n_epochs, done=saved_done or done)
    log = TrialLog(trial_id, config)
    for result in results:
        log.add(result)
    log.finish(how, last, error_line(errors))
    best = {k: float(last.get(k, math.nan)) for k in (BEST_VAL, BEST_TEST)}
    return log, TrialRecord(trial_id, how, epochs, {}, best[BEST_VAL], best[BEST_TEST], 0.0, extra=last)


def ray_states(sweep_dir: Path) -> dict[str, tuple[str, bool]]:
    """Trial id -> (Ray status, last result ``done``) from Tune's newest experiment-state file ({} if none)."""
    files = sorted(sweep_dir.glob("experiment_state-*.json"))  # names carry the session's start time
    try:
        rows = json.loads(files[-1].read_text())["trial_data"] if files else []
        states = [(json.loads(meta), json.loads(run)) for meta, run in rows]
        return {m["trial_id"]: (m["status"], bool((r.get("last_result") or {}).get("done"))) for m, r in states}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def sync_sweep(sweep_dir: Path, settings: dict[str, Any]) -> tuple[bool, int, Any]:
    """Make MLflow hold everything Ray recorded for the sweep in ``sweep_dir`` (settings: its sweep.json);
    returns (parent created, trials, the writer's counts)."""
    try:
        space = search_spaces.get(settings["space"])
        sampled, baseline = tuple(space.distributions()), space.baseline
    except search_spaces.SearchSpaceError:  # the space is gone: runs are named without the sampled values
        sampled, baseline = (), {}
    writer = SweepWriter(settings["mlflow_uri"], settings["name"], sampled, settings.get("repeat_of"), baseline)
    params = {k: v for k, v in settings.items() if k != "mlflow_uri"}
    created = writer.open(params, {"dcml.space": settings["space"]}, attach=True)
    saved, records, stamp = ray_states(sweep_dir), [], 0
    for folder in sorted(p for p in sweep_dir.glob("trial_*") if p.is_dir()):
        log, record = read_trial(folder, saved, settings.get("max_epochs"))
        records.append(record)
        stamp = max(stamp, int(float(record.extra.get("timestamp", 0)) * 1000))
        if log.epochs or writer.find(log.trial_id):  # one that never reported has no run (as live)
            writer.write(log)
    if writer.client.get_run(writer.parent_run_id).info.status not in TERMINAL:
        ended = len(records) >= int(settings.get("num_samples") or 0)
        ended = ended and all(r.status != UNFINISHED for r in records)
        writer.finish(sweep_metrics(records), "FINISHED" if ended else "KILLED", stamp)
        writer.counts["ended"] += 1
    return created, len(records), writer.counts
