"""Gains over the starting network and over the baseline, with the interval that says whether they are noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.gains import start_gains, tuning_gain, welch_interval
from analysis.report_sections import gains_section
from analysis.trials import select_epochs


def _trials(rows: list[tuple]) -> pd.DataFrame:
    cols = ["run_name", "config_id", "seed", "baseline", "status", "objective", "sel_test/recall_at_1",
            "start_val/recall_at_1", "start_test/recall_at_1", "collapsed_epoch"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def test_welch_interval_matches_scipy() -> None:
    a, b = np.array([0.61, 0.64, 0.60, 0.66]), np.array([0.55, 0.58, 0.50])
    low, high = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert all(math.isnan(v) for v in welch_interval(a[:1], b))


def test_selection_never_picks_the_starting_network() -> None:
    wide = pd.DataFrame(
        {"val/recall_at_1": [0.9, 0.2, 0.4], "test/recall_at_1": [0.8, 0.1, 0.3]}, index=pd.Index([0, 1, 2])
    )  # the start scores highest (e.g. a run that only got worse)
    chosen = select_epochs(wide)
    assert chosen["best_epoch"] == 2 and chosen["objective"] == 0.4 and chosen["sel_test_epoch"] == 2
    assert chosen["oracle_test_epoch"] == 2 and chosen["test_epochs"] == 2
    assert chosen["start_val/recall_at_1"] == 0.9 and chosen["start_test/recall_at_1"] == 0.8


def test_start_gains_per_trial() -> None:
    trials = _trials([
        ("a", "c1", 0, True, "FINISHED", 0.6, 0.30, 0.2, 0.06, np.nan),
        ("b", "c2", 0, False, "FINISHED", 0.7, 0.45, 0.25, 0.05, np.nan),
    ])  # fmt: skip
    gains = start_gains(trials)
    assert list(gains["run"]) == ["b", "a"]  # best validation first
    assert gains.loc[0, "test ratio"] == pytest.approx(9.0) and gains.loc[0, "test gain (points)"] == pytest.approx(40)


def test_one_seed_each_cannot_be_told_from_noise() -> None:
    trials = _trials([
        ("base", "c1", 0, True, "FINISHED", 0.60, 0.30, 0.2, 0.06, np.nan),
        ("best", "c2", 0, False, "FINISHED", 0.70, 0.45, 0.2, 0.06, np.nan),
    ])  # fmt: skip
    best, base, gains = tuning_gain(trials)
    assert (best, base) == ("c2", "c1") and gains[0].diff == pytest.approx(0.1)
    assert "+10.00 points, one seed each: cannot be told from seed noise" in gains_section(trials)


def test_seed_repeats_give_an_interval_and_say_when_the_gain_is_noise() -> None:
    rows = [("b", "c1", s, True, "FINISHED", v, v / 2, 0.2, 0.06, np.nan) for s, v in enumerate([0.60, 0.62, 0.58])]
    rows += [("t", "c2", s, False, "FINISHED", v, v / 2, 0.2, 0.06, np.nan) for s, v in enumerate([0.70, 0.71, 0.69])]
    text = gains_section(_trials(rows))
    assert "validation Recall@1: best 70.00 (n=3) vs baseline 60.00 (n=3): +10.00 points (95% CI" in text
    assert "beyond seed noise" in text
    noisy = [("b", "c1", s, True, "FINISHED", v, v, 0.2, 0.06, np.nan) for s, v in enumerate([0.50, 0.70, 0.60])]
    noisy += [("t", "c2", s, False, "FINISHED", v, v, 0.2, 0.06, np.nan) for s, v in enumerate([0.72, 0.52, 0.62])]
    assert "within noise" in gains_section(_trials(noisy))


def test_a_collapsed_baseline_is_named() -> None:
    trials = _trials([
        ("base", "c1", 0, True, "FAILED", 0.2, 0.02, 0.2, 0.06, 3.0),
        ("best", "c2", 0, False, "FINISHED", 0.7, 0.45, 0.2, 0.06, np.nan),
    ])  # fmt: skip
    assert "The baseline run `base` did not finish (FAILED, its embeddings collapsed at epoch 3)." in gains_section(trials)
