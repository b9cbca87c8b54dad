"""One line per trial epoch and per trial event while a sweep runs (Ray's own tables are turned off)."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from dcml_core.collapse import COLLAPSED_KEY, SPREAD
from dcml_core.metric_names import EPOCH, OBJECTIVE, metric_key
from tune.trial_outcome import COLLAPSED, STOPPED_EARLY, error_summary, planned_epochs, result_outcome


class ProgressCallback(Callback):
    """Prints ``[12:01:03 done 3/8, 2 running] trial a1b2_00001 epoch 2/6 val R@1 0.153 ...`` lines."""

    def __init__(self, num_samples: int, max_epochs: int) -> None:
        self.num_samples = num_samples
        self.max_epochs = max_epochs

    def _print(self, trials: list, text: str) -> None:
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        stamp = time.strftime("%H:%M:%S")
        print(
            f"[{stamp} done {done}/{self.num_samples}, {running} running] {text}", file=sys.stdout, flush=True
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials, f"trial {trial.trial_id} started on {trial.node_ip or 'a node'}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        n = planned_epochs(trial.config, self.max_epochs)
        nan = float("nan")
        val, best = result.get(OBJECTIVE, nan), result.get(f"best/{OBJECTIVE}", nan)
        if result.get(EPOCH) == 0:
            test = result.get("test/recall_at_1", nan)
            text = f"trial {trial.trial_id} epoch 0/{n} (starting network) val R@1 {val:.4f}, test R@1 {test:.4f}"
            self._print(trials, text + f" | {result.get('time/eval_s', 0):.0f}s eval")
            return
        text = (
            f"trial {trial.trial_id} epoch {result.get(EPOCH, '?')}/{n} val R@1 {val:.4f} (best {best:.4f}) "
            f"loss {result.get('train/loss', nan):.4f} | {result.get('time/train_s', 0):.0f}s train, "
            f"{result.get('time/eval_s', 0):.0f}s eval"
        )
        if result.get(COLLAPSED_KEY):
            spread = result.get(metric_key("val", SPREAD), nan)
            text += f" | COLLAPSED: every embedding at one point (spread {spread:.2g}); the trial ends"
        self._print(trials, text)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get(EPOCH, 0))
        n = planned_epochs(trial.config, self.max_epochs)
        how = result_outcome("TERMINATED", trial.last_result, n, done=True)
        what = {
            STOPPED_EARLY: f"stopped early by the scheduler after epoch {epochs}/{n}",
            COLLAPSED: f"ended at epoch {epochs}/{n}: its embeddings collapsed (not a score; Optuna is told so)",
        }.get(how, "finished")
        self._print(trials, f"trial {trial.trial_id} {what}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials, f"trial {trial.trial_id} FAILED: {error_summary(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials, f"trial {trial.trial_id} failed and will retry from its last checkpoint")


class BusyTime(Callback):
    """When the trials trained or evaluated: per result, the interval of its own train + eval seconds that ended
    when it arrived (the sweep's overhead is the wall time outside their union: :func:`tune.summary.busy_seconds`)."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        now = time.time()
        own = float(result.get("time/train_s") or 0.0) + float(result.get("time/eval_s") or 0.0)
        self.intervals.append((now - own, now))
