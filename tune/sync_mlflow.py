"""``python tune/run.py --name N --sync-mlflow``: make MLflow hold what Ray recorded for a sweep.

After an MLflow outage that outlasted the sweep (or its driver), MLflow misses what Ray holds on disk: each
``trial_<id>/result.json`` (one JSON line per report), ``params.json`` and ``error.txt``, and Tune's
``experiment_state-*.json`` (how each trial ended). They are replayed through the sweep's idempotent
:class:`~tune.mlflow_writer.SweepWriter` (one child run per trial that reported, the epochs its run lacks, the
ends; a parent left RUNNING gets its summary). Running it again adds nothing. No Ray runtime starts.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import search_spaces
from dcml_core.metric_names import EPOCH
from dcml_core.tracking import check_tracking_uri
from tune.cli import EXIT_FAILED, EXIT_OK, UsageError
from tune.mlflow_writer import TERMINAL, SweepWriter, is_outage
from tune.settings import load_saved, state_dir, storage_root
from tune.summary import BEST_TEST, BEST_VAL, TrialRecord, sweep_metrics
from tune.trial_outcome import UNFINISHED, error_line, outcome, planned_epochs
from tune.trial_run import TrialLog


def read_trial(folder: Path, saved: dict[str, tuple[str, bool]], max_epochs: int | None) -> tuple[TrialLog, TrialRecord]:
    """What Ray wrote for one trial (a torn last line of result.json, from a crash, is skipped), as the log for
    MLflow and the record of its end (decided from Tune's saved status when there is one, else from its
    results: a final result or all epochs run ended it, an error log failed it)."""
    lines = (folder / "result.json").read_text().splitlines() if (folder / "result.json").exists() else []
    results = []
    for line in lines:
        try:
            results.append(json.loads(line))
        except ValueError:
            continue
    params, error = folder / "params.json", folder / "error.txt"
    config = json.loads(params.read_text()) if params.exists() else {}
    trial_id = next((r["trial_id"] for r in results if r.get("trial_id")), folder.name.removeprefix("trial_"))
    last = results[-1] if results else {}
    epochs, errors = int(last.get(EPOCH, 0)), error.read_text() if error.exists() else None
    n_epochs = planned_epochs(config, max_epochs or max((int(r.get(EPOCH, 0)) for r in results), default=0))
    done = bool(last.get("done")) or (bool(results) and epochs >= n_epochs)
    status, saved_done = saved.get(trial_id) or ("ERROR" if errors and not done else "TERMINATED", done)
    how = outcome(status, saved_done or done, epochs, n_epochs)
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
        sampled = tuple(search_spaces.get(settings["space"]).distributions())
    except search_spaces.SearchSpaceError:  # the space is gone: runs are named without the sampled values
        sampled = ()
    writer = SweepWriter(settings["mlflow_uri"], settings["name"], sampled, settings.get("repeat_of"))
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


def sync_command(name: str, storage: str | None, space: str | None) -> int:
    """``tune/run.py --sync-mlflow``: print the figures. Bad input raises (exit 2 in ``run.py``); an MLflow
    that fails midway gives exit code 1 (what was sent stays; run it again)."""
    root = storage_root(storage, create=False)
    if "://" in root and not root.startswith("file://"):
        raise UsageError(
            f"--sync-mlflow reads Ray's results from a folder; --storage {root} is remote: copy the sweep "
            "folder to a local path (or mount it) and pass that as --storage"
        )
    folder = state_dir(root, name)
    if not folder.is_dir():
        raise UsageError(f"--sync-mlflow: no sweep '{name}' in {root} ({folder} missing); check --name and --storage")
    settings = load_saved(folder)
    if space and space != settings["space"]:
        raise UsageError(f"sweep '{name}' was run with --space {settings['space']}, not {space}")
    uri = settings["mlflow_uri"]
    check_tracking_uri(uri)
    try:
        created, trials, n = sync_sweep(folder.parent, settings)
    except Exception as err:
        if not is_outage(err):
            raise
        print(f"error: MLflow {uri} failed during the sync ({err}); what was sent stays, run it again", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"Synced sweep '{name}' to MLflow {uri} (parent run {'created' if created else 'found'}): {trials} trials, "
        f"{n['created']} child run(s) created, {n['present']} metric values already present, {n['added']} added, "
        f"{n['ended']} run(s) ended",
        flush=True,
    )
    return EXIT_OK
