"""End-of-sweep summary and the trainable's best-epoch bookkeeping (no Ray needed)."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

import search_spaces
import tune.summary as summary_module
from tune import cluster
from tune.plan import SweepPlan
from tune.settings import SweepSettings
from tune.summary import (
    TrialRecord,
    best_table,
    busy_seconds,
    command_start,
    counts,
    device_hours,
    summary_text,
)
from tune.trainable import BestSoFar
from tune.trial_outcome import outcome, result_outcome


def _record(tid: str, status: str, val: float, test: float, epochs: int, seconds: float, **kw) -> TrialRecord:
    return TrialRecord(tid, status, epochs, {"model.compos_num": 4, "optim.lr": 1e-4}, val, test, seconds, **kw)


RECORDS = [
    _record("a", "stopped early", 0.30, 0.20, 2, 100.0, baseline=True, start_test=0.05),
    _record("b", "completed", 0.55, 0.41, 6, 300.0, start_val=0.2, start_test=0.08),
    _record("c", "failed", math.nan, math.nan, 0, 20.0),
    _record("d", "completed", 0.50, 0.45, 6, 300.0),
]


def test_trial_outcome_from_ray_status_and_epochs() -> None:
    assert outcome("TERMINATED", True, 6, 6) == "completed"
    assert outcome("TERMINATED", True, 2, 6) == "stopped early"
    assert outcome("ERROR", False, 3, 6) == "failed"
    assert outcome("RUNNING", False, 3, 6) == "unfinished"
    assert outcome("TERMINATED", False, 3, 6) == "unfinished"  # stopped by Ctrl-C, not by ASHA
    assert outcome("TERMINATED", True, 3, 6, collapsed=True) == "collapsed"  # the trainable ended it
    assert outcome("ERROR", False, 3, 6, collapsed=True) == "failed"
    assert result_outcome("TERMINATED", {"epoch": 3, "done": True, "collapsed": 1.0}, 6) == "collapsed"
    assert result_outcome("TERMINATED", {"epoch": 3, "done": True}, 6) == "stopped early"
    assert result_outcome("TERMINATED", {"epoch": 3}, 6, done=True) == "stopped early"


def test_best_table_ranks_by_validation_not_test() -> None:
    lines = best_table(RECORDS, top=2).splitlines()
    assert lines[0].split()[:4] == ["#", "trial", "compos_num", "lr"]
    assert [line.split()[1] for line in lines[2:4]] == ["b", "d"]  # d has the better test score but lower val
    assert "0.5500" in lines[2] and "0.4100" in lines[2]
    assert best_table([RECORDS[2]]) == "(no trial reported a validation result)"


def test_counts_and_device_hours() -> None:
    assert counts(RECORDS) == {"completed": 2, "stopped early": 1, "collapsed": 0, "failed": 1, "unfinished": 0}
    assert device_hours(RECORDS, gpus_per_trial=0.5, cpus_per_trial=4) == (
        pytest.approx(720 * 0.5 / 3600),
        "GPU-hours",
    )
    assert device_hours(RECORDS, gpus_per_trial=0, cpus_per_trial=2) == (
        pytest.approx(720 * 2 / 3600),
        "CPU-core-hours",
    )


def test_summary_text_and_parent_run_metrics() -> None:
    text, metrics = summary_text(RECORDS, wall_s=600, gpus=1, cpus=4, ui="mlflow ui --backend-store-uri X")
    assert "Best configuration (b): model.compos_num=4, optim.lr=0.0001" in text
    assert "Trials: 2 completed, 1 stopped early, 1 failed" in text
    assert "Wall time 10.0 min; 0.200 GPU-hours" in text and "mlflow ui --backend-store-uri X" in text
    assert metrics["sweep/best_val_recall_at_1"] == 0.55 and metrics["sweep/best_test_recall_at_1"] == 0.41
    assert metrics["sweep/gpu_hours"] == pytest.approx(0.2) and metrics["sweep/trials_failed"] == 1
    # the best trial against its own starting network, and tuning against the baseline (trial 1)
    assert "vs its starting network (epoch 0): test Recall@1 0.0800 -> 0.4100 (5.12x, +33.00 points)" in text
    assert "Baseline (a, the space's published configuration, stopped early after 2 epochs)" in text
    assert "tuning gained +25.00 points of val Recall@1 over the baseline (test, reporting only: +21.00)" in text
    assert metrics["sweep/best_start_test_recall_at_1"] == 0.08 and metrics["sweep/baseline_val_recall_at_1"] == 0.3


def test_summary_states_the_overhead_and_the_slot_use() -> None:
    # own time 100 + 300 + 20 + 300 = 720 s; some trial busy for 450 of the 600 s; 2 trials at once: 1200 slot-s
    records = [dataclasses.replace(r, own_s=s) for r, s in zip(RECORDS, (100.0, 300.0, 20.0, 300.0))]
    text, metrics = summary_text(records, wall_s=600, gpus=0, cpus=1, ui="u", busy_s=450, slots=2)
    assert "Overhead 25.0 %: for that share of the 10.0 min since the command started no trial was training" in text
    assert "the 2 trial slot(s) spent 60.0 % of their time in the trials' own training and evaluation (12.0 min;" in text
    assert metrics["sweep/overhead"] == pytest.approx(0.25) and metrics["sweep/slot_use"] == pytest.approx(0.6)
    assert metrics["sweep/own_time_s"] == 720
    serial = summary_text(records, wall_s=800, gpus=0, cpus=1, ui="u")[1]  # unknown busy time: the own time
    assert serial["sweep/overhead"] == pytest.approx(0.1) and serial["sweep/slot_use"] == pytest.approx(0.9)


def test_busy_time_is_the_union_of_the_trials_intervals_inside_the_sweep() -> None:
    intervals = [(1, 3), (0, 2), (5, 6), (-1, 0.5), (9, 12), (5.5, 5.8)]
    assert busy_seconds(intervals, 0, 10) == pytest.approx(3 + 1 + 1)  # [0, 3], [5, 6], [9, 10]
    assert busy_seconds([], 0, 10) == 0 and busy_seconds([(2, 1)], 0, 10) == 0


def test_command_start_is_the_process_start() -> None:
    started = command_start()
    assert started <= summary_module._IMPORTED + 0.05  # before this module was imported (clock ticks: 10 ms)
    assert started >= time.time() - 24 * 3600  # and not garbage (the test process is younger than a day)


def test_trial_slots_from_the_nodes_the_flags_and_the_trials(monkeypatch) -> None:
    nodes = [{"Resources": {"CPU": 2.0}}, {"Resources": {"CPU": 8.0, "GPU": 1.0}}]
    monkeypatch.setattr(cluster, "alive_nodes", lambda: nodes)
    assert cluster.trial_slots(1, 0, None, 16) == 10  # 2 + 8 CPU slots
    assert cluster.trial_slots(1, 0, 2, 16) == 2 and cluster.trial_slots(1, 0, None, 3) == 3
    assert cluster.trial_slots(2, 0.5, None, 16) == 2  # only the GPU node, two halves of its GPU
    assert cluster.trial_slots(1, 0.1, None, 16) == 8  # 10 tenths of a GPU, but 8 CPUs


def test_summary_names_collapsed_trials_and_a_missing_or_best_baseline() -> None:
    collapsed = _record("e", "collapsed", 0.21, 0.05, 3, 50.0)
    text, metrics = summary_text([*RECORDS[1:], collapsed], wall_s=60, gpus=0, cpus=1, ui="u")
    assert "1 collapsed (embeddings at one point: named, not scored)" in text
    assert "Baseline: no trial ran the space's published configuration" in text
    assert metrics["sweep/trials_collapsed"] == 1
    best_is_base = [_record("b", "completed", 0.55, 0.41, 6, 300.0, baseline=True), RECORDS[3]]
    assert "the baseline is the best trial: tuning found nothing better" in summary_text(best_is_base, 1, 0, 1, "u")[0]


def test_best_so_far_round_trips_through_the_checkpoint_folder(tmp_path) -> None:
    best = BestSoFar()
    assert best.improves(0.0) and best.as_report() == {}  # nothing selected before the first epoch
    assert BestSoFar(start={"test/recall_at_1": 0.1}).as_report() == {"start/test/recall_at_1": 0.1}
    best = BestSoFar(0.4, 3, {"val/recall_at_1": 0.4, "test/recall_at_1": 0.3})
    assert not best.improves(0.4) and best.improves(0.41)
    best.save(tmp_path)
    again = BestSoFar.load(tmp_path)
    assert again == best
    assert again.as_report() == {"best/epoch": 3, "best/val/recall_at_1": 0.4, "best/test/recall_at_1": 0.3}
    assert BestSoFar.load(tmp_path / "missing") == BestSoFar()


def _settings(scheduler: str = "asha", storage: str = "/tmp/x") -> SweepSettings:
    return SweepSettings("demo", "n", storage, None, 8, None, scheduler, "optuna", None, 1, 2, None, "x", 0)


def test_asha_rungs() -> None:
    assert SweepPlan(search_spaces.get("dcml_cub"), _settings()).rungs() == [75, 225]
    demo = search_spaces.get("demo").with_overrides(max_epochs=6)  # grace 1, reduction factor 3
    assert SweepPlan(demo, _settings()).rungs() == [1, 3]
    assert SweepPlan(search_spaces.get("demo"), _settings()).rungs() == [1, 3, 9]
    assert SweepPlan(demo, _settings("fifo")).rungs() == []
    assert SweepPlan(demo, _settings(), configs=({"schedule": {"n_epochs": 3}},)).rungs() == []  # fixed configs


def test_sweep_folders(tmp_path) -> None:
    local = SweepSettings(
        "demo", "n", str(tmp_path), None, 8, None, "asha", "optuna", None, 1, 2, None, "sqlite:///x", 0
    )
    assert (
        local.storage_is_local
        and local.state_dir == tmp_path / "n" / "sweep_state"
        and local.sweep_path == f"{tmp_path}/n"
    )
    remote = SweepSettings(
        "demo", "n", "s3://bucket/runs", None, 8, None, "asha", "optuna", None, 1, 2, None, "x", 0
    )
    assert not remote.storage_is_local and remote.sweep_path == "s3://bucket/runs/n"
    assert remote.state_dir.parts[-3:] == ("runs", "state", "n")
