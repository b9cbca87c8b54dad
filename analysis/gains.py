"""What training and tuning gained: each trial against its starting network, the best configuration against the
baseline (the space's published configuration, trial 1 of every sweep), with a confidence interval when seed
repeats give one.

Validation decides; test is reported only. A gain over the baseline is "within noise" when the 95% interval of
the difference of means (Welch's t, over seeds) contains 0, or, with one seed per configuration, always: one
run of each cannot tell a gain from seed noise, so the text says so and names the command that can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

VAL, TEST, START_VAL, START_TEST = "objective", "sel_test/recall_at_1", "start_val/recall_at_1", "start_test/recall_at_1"


def start_gains(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial with a starting-network evaluation: its validation and test Recall@1 at epoch 0 and at
    the validation-selected epoch, the test ratio and difference (points). Best validation first."""
    if START_TEST not in trials.columns:
        return pd.DataFrame()
    rows = trials[trials[START_TEST].notna() & trials[VAL].notna()]
    out = pd.DataFrame({
        "run": rows["run_name"], "baseline": rows.get("baseline", False), "status": rows["status"],
        "val R@1 start": rows.get(START_VAL), "val R@1 best": rows[VAL],
        "test R@1 start": rows[START_TEST], "test R@1 selected": rows.get(TEST),
    })  # fmt: skip
    out["test ratio"] = out["test R@1 selected"] / out["test R@1 start"].where(out["test R@1 start"] > 0)
    out["test gain (points)"] = 100 * (out["test R@1 selected"] - out["test R@1 start"])
    return out.sort_values("val R@1 best", ascending=False, ignore_index=True)


@dataclass(frozen=True)
class Gain:
    """Best configuration minus baseline, on one metric: means over seeds and the 95% interval (Welch)."""

    metric: str
    best: float
    baseline: float
    n_best: int
    n_baseline: int
    low: float = math.nan
    high: float = math.nan

    @property
    def diff(self) -> float:
        return self.best - self.baseline

    @property
    def within_noise(self) -> bool:
        return not (self.low > 0 or self.high < 0)  # also True without an interval (one seed each)

    def text(self, label: str) -> str:
        interval = f" (95% CI {100 * self.low:+.2f} to {100 * self.high:+.2f})" if np.isfinite(self.low) else ""
        verdict = (
            "within noise" if self.within_noise and np.isfinite(self.low)
            else "one seed each: cannot be told from seed noise" if not np.isfinite(self.low)
            else "beyond seed noise"
        )  # fmt: skip
        return (
            f"{label}: best {100 * self.best:.2f} (n={self.n_best}) vs baseline {100 * self.baseline:.2f} "
            f"(n={self.n_baseline}): {100 * self.diff:+.2f} points{interval}, {verdict}"
        )


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of mean(a) - mean(b) with Welch's t (unequal variances); NaN below two values in either."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return (a.mean() - b.mean(),) * 2
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, dof) * se)
    diff = float(a.mean() - b.mean())
    return diff - half, diff + half


def tuning_gain(trials: pd.DataFrame) -> tuple[str, str, list[Gain]] | None:
    """(best config id, baseline config id, gains on validation and test) over finished runs grouped by
    configuration (seeds pooled); None when the sweep has no baseline run or no finished run."""
    done = trials[(trials["status"] == "FINISHED") & trials[VAL].notna()]
    if "baseline" not in done.columns or not done["baseline"].any():
        return None
    base_id = done.loc[done["baseline"], "config_id"].iloc[0]
    means = done.groupby("config_id")[VAL].mean()
    best_id = means.idxmax()
    gains = []
    for metric in (VAL, TEST):
        if metric not in done.columns:
            continue
        best = done.loc[done["config_id"] == best_id, metric].dropna().to_numpy(float)
        base = done.loc[done["config_id"] == base_id, metric].dropna().to_numpy(float)
        if len(best) and len(base):
            low, high = welch_interval(best, base)
            gains.append(Gain(metric, best.mean(), base.mean(), len(best), len(base), low, high))
    return best_id, base_id, gains
