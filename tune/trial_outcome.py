"""How a trial ended, decided in one place for the summary, the progress lines, the MLflow runs and
``--sync-mlflow``; and the one-line reason of a failed trial."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dcml_core.collapse import COLLAPSED_KEY
from dcml_core.metric_names import EPOCH

COMPLETED, STOPPED_EARLY, FAILED, UNFINISHED = "completed", "stopped early", "failed", "unfinished"
COLLAPSED = "collapsed"  # ended by the trainable because its embeddings collapsed (dcml_core/collapse.py)
OUTCOMES = (COMPLETED, STOPPED_EARLY, COLLAPSED, FAILED, UNFINISHED)


def planned_epochs(config: dict[str, Any], default: int) -> int:
    """The number of epochs a trial was configured for (``schedule.n_epochs``, else ``default``)."""
    return int(config.get("schedule", {}).get("n_epochs", default))


def outcome(ray_status: str, done: bool, epochs: int, n_epochs: int, collapsed: bool = False) -> str:
    """One of :data:`OUTCOMES` from Ray's trial status, whether its last result was final, and its epochs.

    ERROR is failed. TERMINATED with a final (``done``) result is stopped early when it ran fewer than its
    planned epochs (the scheduler stopped it), else completed. Anything else is unfinished, including the
    TERMINATED status Tune gives the trials it stops on Ctrl-C (their last result is not final): ``--resume``
    continues them. A final result that says ``collapsed`` (the trainable ended the trial) is collapsed.
    """
    if ray_status == "ERROR":
        return FAILED
    if ray_status != "TERMINATED" or not done:
        return UNFINISHED
    if collapsed:
        return COLLAPSED
    return STOPPED_EARLY if epochs < n_epochs else COMPLETED


def result_outcome(ray_status: str, last: dict[str, Any] | None, n_epochs: int, done: bool | None = None) -> str:
    """:func:`outcome` of a trial from its last result (``done`` overrides the result's own flag)."""
    last = last or {}
    final = bool(last.get("done")) if done is None else done
    return outcome(ray_status, final, int(last.get(EPOCH, 0)), n_epochs, bool(last.get(COLLAPSED_KEY)))


def error_line(text: str | None, limit: int = 500) -> str:
    """Last line of a traceback (the exception), shortened for a tag."""
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "trial failed (see the trial's error.txt)")[:limit]


def error_summary(trial: Any, limit: int = 500) -> str:
    """:func:`error_line` of a failed trial's latest traceback.

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
