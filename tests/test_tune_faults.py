"""Faults injected into the workers of one real sweep (see tests/faults.py): a killed worker, a truncated
checkpoint, a NaN loss, a (simulated) CUDA out-of-memory error and collapsed embeddings, each hitting one trial;
the sweep goes on.

One sweep (6 trials x 4 epochs, 2 at a time, FIFO) is run once for the module; each test checks one fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dcml_core.tracking import COLLAPSED_TAG, DEVICE_TAG, ERROR_TAG, FAISS_TAG, TRIAL_TAG
from tests.faults import FAULTS, claims, fault_env
from tests.test_tune_support import run_sweep_cli, sweep_env, tail, tiny_demo  # noqa: F401  (fixture)

EPOCHS = 4
NAME = "faults"


def _results(trial_dir: Path) -> list[dict]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_demo) -> dict:  # noqa: F811
    import shutil
    import tempfile

    root = tmp_path_factory.mktemp("faults")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    storage, faults = root / "ray", root / "faults"
    env = fault_env(faults, storage / NAME, sweep_env(ray_tmp, OMP_WAIT_POLICY="PASSIVE"))
    log = root / "sweep.log"
    args = [
        "--space", "smoke", "--data-root", str(tiny_demo), "--num-samples", "6", "--max-epochs", str(EPOCHS),
        "--scheduler", "fifo", "--search", "random", "--max-concurrent", "2", "--storage", str(storage),
        "--mlflow-uri", str(root / "mlflow"), "--name", NAME,
    ]  # fmt: skip
    try:
        code = run_sweep_cli(args, env, log, cwd=root, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(NAME)
    runs = {
        r.data.tags[TRIAL_TAG]: r for r in client.search_runs([exp.experiment_id]) if TRIAL_TAG in r.data.tags
    }
    return {
        "code": code, "log": log, "sweep": storage / NAME, "claims": claims(faults), "faults": faults,
        "client": client, "runs": runs,
    }  # fmt: skip


def _trial(sweep: dict, fault: str) -> tuple[str, Path]:
    trial = sweep["claims"].get(fault)
    assert trial, f"no trial got fault {fault!r}: {sweep['claims']}\n{tail(sweep['log'])}"
    return trial, sweep["sweep"] / f"trial_{trial}"


def _epochs_logged_once(sweep: dict, trial: str) -> None:
    run = sweep["runs"][trial]
    steps = [m.step for m in sweep["client"].get_metric_history(run.info.run_id, "val/recall_at_1")]
    assert steps == list(range(EPOCHS + 1))  # the starting network at step 0, then every epoch; nothing twice


def test_the_sweep_goes_on_and_every_fault_hit_one_trial(sweep) -> None:
    assert sweep["code"] == 0, tail(sweep["log"])
    assert sorted(sweep["claims"]) == sorted(FAULTS) and len(set(sweep["claims"].values())) == len(FAULTS)
    assert len(sweep["runs"]) == 6  # one child run per trial, the clean one included
    clean = set(sweep["runs"]) - set(sweep["claims"].values())
    (trial,) = clean
    assert sweep["runs"][trial].info.status == "FINISHED"
    _epochs_logged_once(sweep, trial)
    tags = sweep["runs"][trial].data.tags  # what the trial computed on, reported by the trial itself
    assert tags[DEVICE_TAG] == "cpu (1 threads)" and tags[FAISS_TAG].startswith("faiss 1.") and "build" in tags[FAISS_TAG]


def _first_restored(results: list[dict]) -> dict:
    """The first result after a restore (Tune restarts ``iterations_since_restore`` at 1)."""
    restored = [r for r in results if r["iterations_since_restore"] < r["training_iteration"]]
    assert restored, results
    return restored[0]


# Ray may not write the result a worker reported just before it died to result.json (MLflow, fed by the
# driver's callback, has it: _epochs_logged_once), so only rows from the restore on are compared.


def test_a_killed_worker_restarts_from_its_last_checkpoint(sweep) -> None:
    trial, folder = _trial(sweep, "kill")
    results = _results(folder)
    first = _first_restored(results)
    # continued from the epoch-2 checkpoint (iteration 1 is the starting network's report)
    assert (first["epoch"], first["training_iteration"]) == (3, 4)
    assert results[-1]["epoch"] == EPOCHS and results[-1]["training_iteration"] == EPOCHS + 1
    assert sweep["runs"][trial].info.status == "FINISHED"
    _epochs_logged_once(sweep, trial)
    tags = sweep["runs"][trial].data.tags  # what the trial computed on, reported by the trial itself
    assert tags[DEVICE_TAG] == "cpu (1 threads)" and tags[FAISS_TAG].startswith("faiss 1.") and "build" in tags[FAISS_TAG]


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_and_says_so(sweep) -> None:
    trial, folder = _trial(sweep, "corrupt")
    corrupted = (sweep["faults"] / "corrupted").read_text()
    log = sweep["log"].read_text(errors="replace")
    assert f"checkpoint {corrupted} is unusable" in log and "corrupt or truncated" in log, tail(sweep["log"])
    assert "falling back to the previous checkpoint" in log
    assert "restored from the older checkpoint" in log
    results = _results(folder)
    first = _first_restored(results)
    assert (first["epoch"], first["training_iteration"]) == (2, 4)  # epoch 2 trained again from epoch 1
    assert results[-1]["epoch"] == EPOCHS and results[-1]["training_iteration"] == EPOCHS + 2
    assert sweep["runs"][trial].info.status == "FINISHED"
    _epochs_logged_once(sweep, trial)
    tags = sweep["runs"][trial].data.tags  # what the trial computed on, reported by the trial itself
    assert tags[DEVICE_TAG] == "cpu (1 threads)" and tags[FAISS_TAG].startswith("faiss 1.") and "build" in tags[FAISS_TAG]


def test_a_nan_loss_fails_the_trial_with_its_reason_in_mlflow(sweep) -> None:
    trial, folder = _trial(sweep, "nan")
    run = sweep["runs"][trial]
    assert run.info.status == "FAILED"
    reason = run.data.tags[ERROR_TAG]
    assert "NonFiniteLossError" in reason and "training loss is nan at epoch 2" in reason, reason
    assert "lower the learning rate" in reason
    steps = [m.step for m in sweep["client"].get_metric_history(run.info.run_id, "val/recall_at_1")]
    assert steps == [0, 1]  # the starting network and the epoch before the NaN are kept


def test_out_of_memory_names_batch_size_and_gpu_share_and_is_not_retried(sweep) -> None:
    trial, folder = _trial(sweep, "oom")
    run = sweep["runs"][trial]
    assert run.info.status == "FAILED"
    reason = run.data.tags[ERROR_TAG]
    assert "CUDA out of memory in training with batch size 48" in reason, reason
    assert "lower data.batch_size" in reason and "--gpus-per-trial 0" in reason
    assert "not retried" in reason  # the retries re-raised at once instead of training again
    errors = [
        ln for ln in (folder / "error.txt").read_text().splitlines() if "Error: " in ln and ln[0] != " "
    ]
    trained = [ln for ln in errors if ln.startswith("dcml_core.oom.DeviceOutOfMemoryError")]
    assert len(trained) == 1, errors  # one attempt trained; every retry stopped at its first line


def test_collapsed_embeddings_end_the_trial_named_as_such(sweep) -> None:
    trial, folder = _trial(sweep, "collapse")
    run = sweep["runs"][trial]
    assert run.info.status == "FAILED" and run.data.tags[COLLAPSED_TAG] == "2"
    assert run.data.tags[ERROR_TAG].startswith("embeddings collapsed at epoch 2 (val embedding spread 0 < 0.01)")
    last = _results(folder)[-1]
    assert last["epoch"] == 2 and last["collapsed"] == 1.0  # the trial ended at once: no epochs 3 and 4
    log = sweep["log"].read_text(errors="replace")
    assert f"trial {trial} ended at epoch 2/{EPOCHS}: its embeddings collapsed" in log
    assert "COLLAPSED: every embedding at one point" in log
    assert "1 collapsed (embeddings at one point: named, not scored)" in log, tail(sweep["log"])


def test_a_recorded_deterministic_failure_is_raised_again_without_training(tmp_path) -> None:
    from pyarrow import fs

    from tune.trial_recovery import RepeatedTrialFailure, raise_if_fatal, remember_fatal

    folder = (fs.LocalFileSystem(), str(tmp_path / "trial_x"))
    raise_if_fatal(folder)  # nothing recorded: the attempt runs
    remember_fatal(folder, FloatingPointError("training loss is nan at epoch 3"))
    with pytest.raises(
        RepeatedTrialFailure, match=r"FloatingPointError: training loss is nan at epoch 3 \(not"
    ):
        raise_if_fatal(folder)
