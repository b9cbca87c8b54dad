"""GPU readiness of the sweep side, on the CPU (issue 12): the trial's device decided before any data, the
failure kinds (not retried, retried by Tune), checkpoints at the ASHA rungs, no reused actors with GPUs, the
cluster check's verdicts. The two-node cluster with GPUs that CUDA lacks is in tests/test_tune_cluster.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import ray
from pyarrow import fs

import tune.trainable as trainable_module
from dcml_core.config import ExperimentConfig
from dcml_core.device_info import cuda_status, describe_cuda
from dcml_core.engine import DeviceOutOfMemoryError
from tune.cluster_check import problems_of
from tune.trainable import checkpoint_due, dcml_trial, full_eval_due
from tune.trial_device import NoUsableGpuError, oom_retries, trial_device
from tune.trial_recovery import DETERMINISTIC, FATAL_FILE, SharedGpuOutOfMemoryError

NO_CUDA = {"torch": "2.14.1+cu130", "torch_cuda": "13.0", "cuda_available": False, "devices": 0,
           "device_names": [], "driver": "535.54.03", "visible_devices": "3",
           "problem": "The NVIDIA driver on your system is too old (found version 12020)"}  # fmt: skip
ONE_GPU = {**NO_CUDA, "cuda_available": True, "devices": 1, "device_names": ["A100"], "problem": ""}


def test_a_gpu_share_without_usable_cuda_fails_with_the_reason():
    assert trial_device(0) == "cpu" and trial_device(0.5, ONE_GPU) == "cuda" and trial_device(1, ONE_GPU) == "cuda"
    with pytest.raises(NoUsableGpuError) as err:
        trial_device(0.5, NO_CUDA)
    text = str(err.value)
    for part in ("holds 0.5 GPU", "torch 2.14.1+cu130 built for CUDA 13.0", "NVIDIA driver 535.54.03",
                 "is_available() = False (The NVIDIA driver on your system is too old", "CUDA_VISIBLE_DEVICES=3",
                 "--gpus-per-trial 0"):  # fmt: skip
        assert part in text, (part, text)
    with pytest.raises(NoUsableGpuError, match="one process that trains on one GPU"):
        trial_device(2, ONE_GPU)
    status = cuda_status()  # this machine: a CUDA build of torch and no driver
    assert status["cuda_available"] is False and status["problem"] and "CUDA_VISIBLE_DEVICES=" in describe_cuda(status)


def _fake_trial(monkeypatch, tmp_path: Path, gpus: float, train=None) -> tuple[fs.LocalFileSystem, str]:
    folder = (fs.LocalFileSystem(), str(tmp_path / "trial"))
    monkeypatch.setattr(trainable_module, "trial_folder", lambda: folder)
    monkeypatch.setattr(trainable_module, "trial_resources", lambda: (2, gpus))
    monkeypatch.setattr(trainable_module, "use_threads", lambda cpus: None)
    monkeypatch.setattr(trainable_module, "device_tags", lambda *a: {})
    monkeypatch.setattr(trainable_module, "_train", train or (lambda *a: pytest.fail("trained")))
    return folder


def test_the_device_is_checked_before_any_data_and_the_failure_is_not_retried(monkeypatch, tmp_path):
    monkeypatch.setattr("tune.trial_device.cuda_status", lambda: NO_CUDA)
    _fake_trial(monkeypatch, tmp_path, gpus=1)  # training would fail the test: nothing is read
    with pytest.raises(NoUsableGpuError, match="CUDA is not usable"):
        dcml_trial({"data": {"dataset": "cub200", "root": "/nowhere"}})
    assert (tmp_path / "trial" / FATAL_FILE).exists() and NoUsableGpuError in DETERMINISTIC


def _oom(*args):
    raise DeviceOutOfMemoryError("CUDA out of memory in training with batch size 112 on cuda: lower ...")


def test_out_of_memory_on_a_shared_gpu_goes_back_to_tune_and_on_a_whole_gpu_is_final(monkeypatch, tmp_path):
    monkeypatch.setattr("tune.trial_device.cuda_status", lambda: ONE_GPU)
    captured = {}
    _fake_trial(monkeypatch, tmp_path / "shared", gpus=0.5, train=lambda cfg, device, options, *a: (
        captured.update(options), _oom()))  # fmt: skip
    with pytest.raises(SharedGpuOutOfMemoryError, match=r"this trial had 0.5 GPU"):
        dcml_trial({})
    assert captured == {"cpus": 2, "oom_retries": 3, "oom_wait_s": 30.0}  # retried in place first
    assert not (tmp_path / "shared" / "trial" / FATAL_FILE).exists()  # Tune may restart it from a checkpoint
    assert not isinstance(SharedGpuOutOfMemoryError("x"), DETERMINISTIC)

    _fake_trial(monkeypatch, tmp_path / "whole", gpus=1, train=lambda *a: _oom())
    with pytest.raises(DeviceOutOfMemoryError, match=r"this trial had 1 GPU"):
        dcml_trial({})
    assert (tmp_path / "whole" / "trial" / FATAL_FILE).exists()  # repeats identically: not retried
    assert oom_retries(1) == (0, 0.0) and oom_retries(0) == (0, 0.0)


def test_checkpoints_every_n_epochs_at_the_rungs_and_at_the_end():
    cfg = ExperimentConfig.from_dict({"schedule": {"n_epochs": 12}, "checkpoint_every": 5})
    assert [e for e in range(1, 13) if checkpoint_due(e, cfg, (3, 9))] == [3, 5, 9, 10, 12]
    assert ExperimentConfig().checkpoint_every == 5
    full = ExperimentConfig.from_dict({"schedule": {"n_epochs": 12}, "eval": {"full_every": 4}})
    assert [e for e in range(1, 13) if full_eval_due(e, full, (3, 9))] == [3, 4, 8, 9, 12]  # the same rule
    assert all(full_eval_due(e, cfg, ()) for e in range(1, 13))  # default: every metric every epoch
    with pytest.raises(ValueError, match="eval.full_every"):
        ExperimentConfig.from_dict({"eval": {"full_every": 0}})
    with pytest.raises(ValueError, match="checkpoint_every"):
        ExperimentConfig.from_dict({"checkpoint_every": 0})


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_the_trainable_gets_the_rungs_and_actors_are_reused_only_without_gpus(local_ray, monkeypatch, tmp_path):
    import search_spaces
    import tune.tuner as tuner_module
    from tune.plan import SweepPlan
    from tune.settings import SweepSettings

    seen = []
    monkeypatch.setattr(tuner_module, "dcml_trial", lambda config, rungs=(): seen.append(rungs))
    tuner_module.trainable(1, 0, [2, 4])({})
    assert seen == [(2, 4)]
    settings = SweepSettings(space="smoke", name="s", storage=str(tmp_path), data_root=None, num_samples=2,
                             max_epochs=None, scheduler="asha", search="random", gpus_per_trial=None,
                             cpus_per_trial=1, max_concurrent=None, address=None, mlflow_uri="sqlite:///x.db",
                             seed=0)  # fmt: skip
    space = dataclasses.replace(search_spaces.get("demo"), scheduler={"grace_period": 2, "reduction_factor": 3, "max_t": 20})
    plan = SweepPlan(space, settings)
    assert plan.rungs() == [2, 6, 18]  # grace * factor**k below max_t
    for gpus, reuse in ((0, True), (0.5, False), (1, False)):
        config = tuner_module.new_tuner(plan, 1, gpus, [])._local_tuner._tune_config  # Ray 2.60 keeps it there
        assert config.reuse_actors is reuse, gpus


def test_the_cluster_check_leaves_no_folder_behind(local_ray, tmp_path):
    from tune.cluster_check import run_check

    storage = tmp_path / "runs" / "ray"  # neither exists yet: the check creates both, and removes both
    table, problems = run_check({"data": {"dataset": "demo"}}, str(storage), cpus=1, gpus=0)
    assert problems == [] and "ok" in table
    assert list(tmp_path.iterdir()) == []
    local = run_check({"data": {"dataset": "demo"}}, str(storage), cpus=1, gpus=0, in_process=True)
    assert local == (table, []) and list(tmp_path.iterdir()) == []  # the driver's process: the same row
    (tmp_path / "kept").mkdir()  # a folder that existed stays, and so does what it held
    (tmp_path / "kept" / "f").write_text("x")
    run_check({"data": {"dataset": "demo"}}, str(tmp_path / "kept"), cpus=1, gpus=0)
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["f"]


def _row(**changes) -> dict:
    row = {"cuda": NO_CUDA, "cuda_text": describe_cuda(NO_CUDA), "faiss": "faiss 1.15.1 (CPU build)",
           "data": "ok: 10 train / 10 test images", "weights": "ok", "storage": "ok", "smoke": ""}  # fmt: skip
    return {**row, **changes}


def test_the_cluster_check_names_what_breaks_trials_on_a_node():
    assert problems_of("n1", _row(), gpus=0, fits=True) == []  # CPU trials need no CUDA
    assert problems_of("n1", _row(), gpus=1, fits=False) == []  # no trial fits on this node
    (cuda,) = problems_of("n1", _row(), gpus=1, fits=True)
    assert cuda.startswith("n1: Ray gives trials 1 GPU here but CUDA is not usable: torch 2.14.1+cu130")
    broken = _row(cuda=ONE_GPU, storage="no: FileNotFoundError: /shared/.dcml-cluster-check-x/driver",
                  data="no: FileNotFoundError: data root '/data' does not exist", smoke="cuda:0 computed a wrong")
    assert problems_of("n2", broken, gpus=1, fits=True) == [
        "n2: data: FileNotFoundError: data root '/data' does not exist",
        "n2: the storage is not shared with the driver: FileNotFoundError: /shared/.dcml-cluster-check-x/driver",
        "n2: a matrix product on the GPU failed: cuda:0 computed a wrong",
    ]
