"""End-of-sweep summary: the best trials, what happened to every trial, time and device-hours spent, and the
sweep's overhead (its wall time since the command started against the trials' own training and evaluation)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcml_core.metric_names import EPOCH, OBJECTIVE, OWN_TIME
from search_spaces import value_at
from tune.trial_outcome import (
    COLLAPSED,
    COMPLETED,
    FAILED,
    OUTCOMES,
    STOPPED_EARLY,
    UNFINISHED,
    result_outcome,
)
from tune.trial_run import is_baseline

BEST_VAL, BEST_TEST = f"best/{OBJECTIVE}", "best/test/recall_at_1"
START_VAL, START_TEST = f"start/{OBJECTIVE}", "start/test/recall_at_1"  # the starting network (epoch 0)


@dataclass
class TrialRecord:
    """What the summary needs of one trial."""

    trial_id: str
    status: str  # an outcome: completed | stopped early | failed | unfinished
    epochs: int
    params: dict[str, Any]
    best_val: float
    best_test: float
    time_total_s: float
    checkpoint: Any = None  # the trial's best checkpoint (tune.Checkpoint) when it has one
    extra: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    start_val: float = math.nan  # the starting network's scores (epoch 0)
    start_test: float = math.nan
    baseline: bool = False  # the space's published configuration
    own_s: float = 0.0  # the trial's own training + evaluation time (``time/own_s`` of its last report)


def records_from_results(
    results: Any, sampled: list[str], default_epochs: int, baseline: dict[str, Any] | None = None
) -> list[TrialRecord]:
    """One record per trial of a ``ResultGrid`` (Ray's trials and results are in the same order)."""
    records = []
    for trial, result in zip(results._experiment_analysis.trials, results):
        metrics = result.metrics or {}
        epochs = int(metrics.get(EPOCH, 0))
        n_epochs = int(value_at(trial.config, "schedule.n_epochs") or default_epochs)
        try:
            checkpoint = result.get_best_checkpoint(OBJECTIVE, "max") if metrics else None
        except (RuntimeError, ValueError, KeyError):
            checkpoint = None
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                status=result_outcome(trial.status, trial.last_result, n_epochs),
                epochs=epochs,
                params={name: value_at(trial.config, name) for name in sampled},
                best_val=float(metrics.get(BEST_VAL, math.nan)),
                best_test=float(metrics.get(BEST_TEST, math.nan)),
                time_total_s=float(metrics.get("time_total_s", 0.0)),
                checkpoint=checkpoint,
                config=trial.config,
                start_val=float(metrics.get(START_VAL, math.nan)),
                start_test=float(metrics.get(START_TEST, math.nan)),
                baseline=is_baseline(trial.config, baseline or {}),
                own_s=float(metrics.get(OWN_TIME, 0.0)),
            )
        )
    return records


def ranked(records: list[TrialRecord]) -> list[TrialRecord]:
    """Trials with a validation score, best first."""
    return sorted((r for r in records if not math.isnan(r.best_val)), key=lambda r: -r.best_val)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_table(records: list[TrialRecord], top: int = 5) -> str:
    """Fixed-width table of the ``top`` trials by best validation Recall@1."""
    rows = ranked(records)[:top]
    if not rows:
        return "(no trial reported a validation result)"
    names = list(rows[0].params)
    header = ["#", "trial", *[n.split(".")[-1] for n in names], "val R@1", "test R@1*", "at start", "epochs", "status"]
    body = [
        [
            str(i + 1),
            r.trial_id,
            *[_fmt(r.params[n]) for n in names],
            f"{r.best_val:.4f}",
            f"{r.best_test:.4f}",
            f"{r.start_test:.4f}",
            str(r.epochs),
            r.status + (" (baseline)" if r.baseline else ""),
        ]
        for i, r in enumerate(rows)
    ]
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("* test Recall@1 at the epoch the validation Recall@1 selected (never used for selection); "
                 "at start: the same network's test Recall@1 before its first step")  # fmt: skip
    return "\n".join(lines)


def gain_line(record: TrialRecord) -> str | None:
    """How far the selected epoch's test Recall@1 is from the trial's starting network (None if unknown)."""
    if math.isnan(record.start_test) or math.isnan(record.best_test):
        return None
    ratio = f"{record.best_test / record.start_test:.2f}x, " if record.start_test > 0 else ""
    return (
        f"  vs its starting network (epoch 0): test Recall@1 {record.start_test:.4f} -> {record.best_test:.4f} "
        f"({ratio}{100 * (record.best_test - record.start_test):+.2f} points)"
    )


def baseline_lines(records: list[TrialRecord], best: TrialRecord | None) -> list[str]:
    """The baseline trial (the space's published configuration) and what tuning gained over it."""
    base = next((r for r in records if r.baseline), None)
    if base is None:
        return ["Baseline: no trial ran the space's published configuration"]
    partial = f", {base.status} after {base.epochs} epoch{'s' * (base.epochs != 1)}" if base.status != COMPLETED else ""
    lines = [
        f"Baseline ({base.trial_id}, the space's published configuration{partial}): val Recall@1 "
        f"{base.best_val:.4f}, test Recall@1 at that epoch {base.best_test:.4f}"
    ]
    if best is not None and best is not base and not math.isnan(base.best_val):
        lines.append(
            f"  tuning gained {100 * (best.best_val - base.best_val):+.2f} points of val Recall@1 over the baseline "
            f"(test, reporting only: {100 * (best.best_test - base.best_test):+.2f}); one seed each: tell the gain from "
            "noise with seed repeats (--repeat-top-k K --seeds N --from <this sweep>, which repeat the baseline too)"
        )
    elif best is base:
        lines.append("  the baseline is the best trial: tuning found nothing better")
    return lines


def counts(records: list[TrialRecord]) -> dict[str, int]:
    out = dict.fromkeys(OUTCOMES, 0)
    for r in records:
        out[r.status] += 1
    return out


def sweep_metrics(records: list[TrialRecord]) -> dict[str, float]:
    """The best scores, the best trial's start, the baseline's scores and trial counts (parent run)."""
    n, best = counts(records), (ranked(records) or [None])[0]
    base = next((r for r in records if r.baseline), None)
    return {
        "sweep/best_val_recall_at_1": best.best_val if best else math.nan,
        "sweep/best_test_recall_at_1": best.best_test if best else math.nan,
        "sweep/best_start_test_recall_at_1": best.start_test if best else math.nan,
        "sweep/baseline_val_recall_at_1": base.best_val if base else math.nan,
        "sweep/baseline_test_recall_at_1": base.best_test if base else math.nan,
        **{f"sweep/trials_{k.replace(' ', '_')}": n[k] for k in (COMPLETED, STOPPED_EARLY, COLLAPSED, FAILED)},
    }


def device_hours(
    records: list[TrialRecord], gpus_per_trial: float, cpus_per_trial: float
) -> tuple[float, str]:
    """Sum of trial time x devices held, in hours: GPU-hours if trials had GPUs, else CPU-core-hours."""
    seconds = sum(r.time_total_s for r in records)
    if gpus_per_trial > 0:
        return seconds * gpus_per_trial / 3600, "GPU-hours"
    return seconds * cpus_per_trial / 3600, "CPU-core-hours"


def command_start() -> float:
    """When this process started (``time.time()`` scale, from ``/proc``): the sweep's wall time counts the
    interpreter start and the imports too. Where ``/proc`` is missing: when this module was imported."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks  # since boot
        boot = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
        return boot + started
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


_IMPORTED = time.time()


def busy_seconds(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of ``intervals`` (``(from, to)`` times) inside ``[start, end]``."""
    total, reach = 0.0, start
    for lo, hi in sorted(intervals):
        lo, hi = max(lo, reach), min(hi, end)
        if hi > lo:
            total, reach = total + hi - lo, hi
    return total


@dataclass(frozen=True)
class Overhead:
    """A sweep's time: ``wall_s`` since the command started, the seconds in which at least one trial was training
    or evaluating (``busy_s``), the trials' own seconds summed (``own_s``) and the trial ``slots``."""

    wall_s: float
    busy_s: float
    own_s: float
    slots: int

    @property
    def share(self) -> float:
        """The overhead: the share of the wall time in which no trial trained or evaluated."""
        return 1.0 - self.busy_s / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def slot_use(self) -> float:
        """The share of the trial slots' time (``slots`` x wall) spent in the trials' own work."""
        return self.own_s / (self.wall_s * self.slots) if self.wall_s > 0 and self.slots > 0 else math.nan

    def line(self) -> str:
        return (
            f"Overhead {100 * self.share:.1f} %: for that share of the {self.wall_s / 60:.1f} min since the command "
            f"started no trial was training or evaluating (start-up, engine builds, gaps, end of sweep); the "
            f"{self.slots} trial slot(s) spent {100 * self.slot_use:.1f} % of their time in the trials' own training "
            f"and evaluation ({self.own_s / 60:.1f} min; the rest includes slots idle while fewer trials than slots "
            "remained)"
        )


def summary_text(
    records: list[TrialRecord], wall_s: float, gpus: float, cpus: float, ui: str, top: int = 5,
    busy_s: float | None = None, slots: int = 1,
) -> tuple[str, dict[str, float]]:
    """The printed summary and the numbers logged on the sweep's parent run (``wall_s``: since the command
    started; ``busy_s``: seconds in which a trial trained or evaluated, see :func:`busy_seconds`, default the
    trials' own time; ``slots``: trials that could run at once)."""
    n = counts(records)
    hours, unit = device_hours(records, gpus, cpus)
    lines = [f"Best trials (of {len(records)}):", best_table(records, top), ""]
    best = ranked(records)[0] if ranked(records) else None
    if best is not None:
        lines.append(
            f"Best configuration ({best.trial_id}): "
            + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        )
        lines.append(f"  val Recall@1 {best.best_val:.4f}, test Recall@1 at that epoch {best.best_test:.4f}")
        lines += [line for line in [gain_line(best)] if line]
    lines += baseline_lines(records, best)
    collapsed = f", {n[COLLAPSED]} collapsed (embeddings at one point: named, not scored)" if n[COLLAPSED] else ""
    lines.append(
        f"Trials: {n[COMPLETED]} completed, {n[STOPPED_EARLY]} stopped early{collapsed}, {n[FAILED]} failed"
        + (f", {n[UNFINISHED]} unfinished (resume with --resume)" if n[UNFINISHED] else "")
    )
    lines.append(f"Wall time {wall_s / 60:.1f} min; {hours:.3f} {unit} spent by trials")
    own = sum(r.own_s for r in records)
    spent = Overhead(wall_s, min(own, wall_s) if busy_s is None else busy_s, own, slots)
    lines.append(spent.line())
    lines.append(f"MLflow UI: {ui}")
    metrics = {
        **sweep_metrics(records),
        "sweep/wall_time_s": wall_s,
        "sweep/own_time_s": own,
        "sweep/overhead": spent.share,
        "sweep/slot_use": spent.slot_use,
        f"sweep/{unit.replace('-', '_').lower()}": hours,
    }
    return "\n".join(lines), metrics
