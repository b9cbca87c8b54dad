"""End-of-sweep summary and the trainable's best-epoch bookkeeping (no Ray needed)."""

from __future__ import annotations

import math

import pytest

import search_spaces
from tune.plan import SweepPlan
from tune.settings import SweepSettings
from tune.summary import TrialRecord, best_table, counts, device_hours, summary_text
from tune.trainable import BestSoFar
from tune.trial_outcome import outcome


def _record(tid: str, status: str, val: float, test: float, epochs: int, seconds: float) -> TrialRecord:
    return TrialRecord(tid, status, epochs, {"model.compos_num": 4, "optim.lr": 1e-4}, val, test, seconds)


RECORDS = [
    _record("a", "stopped early", 0.30, 0.20, 2, 100.0),
    _record("b", "completed", 0.55, 0.41, 6, 300.0),
    _record("c", "failed", math.nan, math.nan, 0, 20.0),
    _record("d", "completed", 0.50, 0.45, 6, 300.0),
]


def test_trial_outcome_from_ray_status_and_epochs() -> None:
    assert outcome("TERMINATED", True, 6, 6) == "completed"
    assert outcome("TERMINATED", True, 2, 6) == "stopped early"
    assert outcome("ERROR", False, 3, 6) == "failed"
    assert outcome("RUNNING", False, 3, 6) == "unfinished"
    assert outcome("TERMINATED", False, 3, 6) == "unfinished"  # stopped by Ctrl-C, not by ASHA


def test_best_table_ranks_by_validation_not_test() -> None:
    lines = best_table(RECORDS, top=2).splitlines()
    assert lines[0].split()[:4] == ["#", "trial", "compos_num", "lr"]
    assert [line.split()[1] for line in lines[2:4]] == ["b", "d"]  # d has the better test score but lower val
    assert "0.5500" in lines[2] and "0.4100" in lines[2]
    assert best_table([RECORDS[2]]) == "(no trial reported a validation result)"


def test_counts_and_device_hours() -> None:
    assert counts(RECORDS) == {"completed": 2, "stopped early": 1, "failed": 1, "unfinished": 0}
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


def test_best_so_far_round_trips_through_the_checkpoint_folder(tmp_path) -> None:
    best = BestSoFar()
    assert best.improves(0.0) and best.as_report() == {"best/epoch": 0}
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
    demo = search_spaces.get("demo").with_overrides(max_epochs=6)  # grace 1, reduction factor 2
    assert SweepPlan(demo, _settings()).rungs() == [1, 2, 4]
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
