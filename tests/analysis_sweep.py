"""One real small sweep for the analysis tests (no tests here), run once per test session.

``tune/run.py --space smoke`` on the tiny demo data: 4 trials of 3 epochs, Optuna TPE and ASHA (rungs at epochs
1 and 2), two at a time; the first trial to finish an epoch gets NaN weights before its second (tests/faults.py),
so the sweep holds COMPLETE, PRUNED (when ASHA stops one) and FAIL trials. Ray's records (``result.json``, the
experiment state), Optuna's study (``sweep_state/optuna.db``) and MLflow's store (with the best checkpoints as
artifacts) are all kept for the tests to compare.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults import fault_env
from tests.test_tune_support import run_sweep_cli, sweep_env, tail

NAME, EPOCHS, TRIALS = "views", 3, 4
_SWEEP: list[SmallSweep] = []


@dataclass(frozen=True)
class SmallSweep:
    """Where the sweep's three records are."""

    name: str
    root: Path
    tracking_uri: str
    sweep_dir: Path  # Ray's experiment folder
    data_root: Path

    @property
    def optuna_db(self) -> Path:
        return self.sweep_dir / "sweep_state" / "optuna.db"


def small_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_demo: Path) -> SmallSweep:
    """The session's sweep (run on first use; fails the test with the sweep's log if it did not finish)."""
    if _SWEEP:
        return _SWEEP[0]
    root = tmp_path_factory.mktemp("analysis_sweep")
    storage, log = root / "ray", root / "sweep.log"
    flags = {"--space": "smoke", "--data-root": tiny_demo, "--num-samples": TRIALS, "--max-epochs": EPOCHS}
    flags.update(
        {"--max-concurrent": 2, "--storage": storage, "--mlflow-uri": root / "mlflow", "--name": NAME}
    )
    with tempfile.TemporaryDirectory(
        prefix="rt", dir="/tmp", ignore_cleanup_errors=True
    ) as ray_tmp:  # Ray's sockets need a short path
        env = sweep_env(Path(ray_tmp), OMP_WAIT_POLICY="PASSIVE")
        env = fault_env(root / "faults", storage / NAME, env, faults=("nan",))
        code = run_sweep_cli([str(v) for kv in flags.items() for v in kv], env, log, cwd=root, timeout=600)
    assert code == 0, tail(log)
    sweep = SmallSweep(NAME, root, f"sqlite:///{root / 'mlflow' / 'mlflow.db'}", storage / NAME, tiny_demo)
    _SWEEP.append(sweep)
    return sweep
