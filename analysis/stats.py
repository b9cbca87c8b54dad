"""Mean, standard deviation and t confidence interval over seeds, per configuration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

SUMMARY_PREFIXES = ("best_val/", "final_val/", "sel_test/", "oracle_test/")
FINISHED = ("FINISHED",)


@dataclass(frozen=True)
class MeanCI:
    """Sample mean, standard deviation (ddof=1) and two-sided t-interval half-width of finite values."""

    n: int
    mean: float
    std: float
    ci: float  # half-width; NaN below two values
    low: float
    high: float


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Student-t interval ``mean ± t_{(1+c)/2, n-1} * std / sqrt(n)``; NaN values are ignored."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return MeanCI(0, np.nan, np.nan, np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if n < 2:
        return MeanCI(1, mean, np.nan, np.nan, np.nan, np.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * std / np.sqrt(n))
    return MeanCI(n, mean, std, half, mean - half, mean + half)


def summary_metrics(trials: pd.DataFrame) -> list[str]:
    """Default metric columns to summarise: the objective and every selected/final metric."""
    return ["objective", *[c for c in trials.columns if c.startswith(SUMMARY_PREFIXES)]]


def seed_summary(
    trials: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    by: str = "config_id",
    confidence: float = 0.95,
    statuses: Sequence[str] | None = FINISHED,
) -> pd.DataFrame:
    """Tidy summary over seeds: one row per (configuration, metric).

    Columns: ``<by>, metric, n, mean, std, ci`` (half-width of the ``confidence`` t-interval), ``ci_low,
    ci_high, seeds`` (the seeds with a finite value, comma-separated). Only runs with a status in
    ``statuses`` count (None: all runs).
    """
    if by not in trials.columns:
        raise ValueError(f"cannot group by {by!r}: not a column of the trial table")
    metrics = list(metrics) if metrics is not None else summary_metrics(trials)
    missing = [m for m in metrics if m not in trials.columns]
    if missing:
        raise ValueError(f"unknown metric column(s) {missing}; available: {summary_metrics(trials)}")
    rows = []
    for key, group in _finished(trials, statuses).groupby(by, sort=False):
        for metric in metrics:
            finite = group[np.isfinite(group[metric].astype(float))]
            s = mean_ci(finite[metric].astype(float), confidence)
            seeds = ",".join(str(v) for v in finite["seed"].tolist()) if "seed" in group else ""
            rows.append(
                {
                    by: key,
                    "metric": metric,
                    "n": s.n,
                    "mean": s.mean,
                    "std": s.std,
                    "ci": s.ci,
                    "ci_low": s.low,
                    "ci_high": s.high,
                    "seeds": seeds,
                }
            )
    columns = [by, "metric", "n", "mean", "std", "ci", "ci_low", "ci_high", "seeds"]
    return pd.DataFrame(rows, columns=columns)


def _finished(trials: pd.DataFrame, statuses: Sequence[str] | None) -> pd.DataFrame:
    return trials if statuses is None else trials[trials["status"].isin(statuses)]
