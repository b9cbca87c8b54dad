"""A small MLflow store with known values, laid out as the sweep tracker and the single-run logger write it.

Shared by tests/test_analysis.py and tests/test_notebooks.py. Experiments:

* ``sweep_a``: parent + 4 trials (t1 full, t2 stopped early, t3 failed, t4 with a validation tie and no test
  evaluation at its best epoch); 2 CPUs per trial;
* ``sweep_a_repeat``: seed repeats (3 seeds) of t4's and t1's configurations, tagged ``dcml.repeat_of`` and
  ``dcml.config_id``;
* ``single``: one ``python -m dcml_core.train`` run (no parent, lists logged as ``a,b``);
* ``empty_sweep``: a parent run only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from analysis.params import config_id
from dcml_core.config import ExperimentConfig

T0 = 1_700_000_000_000  # ms
BASE = {
    "data": {"dataset": "demo", "num_workers": 0},
    "model": {"method": "dcml", "features": ["discriminative", "shared"], "compos_num": 4, "ensemble_num": 2},
    "optim": {"lr": 1e-4},
    "schedule": {"n_epochs": 5, "tau": [3]},
}
# name: (compos_num, lr, status, stopped tag, val R@1 per epoch, {epoch: test R@1})
TRIALS = {
    "t1": (4, 1e-4, "FINISHED", "false", [0.10, 0.30, 0.50, 0.40, 0.45], {1: 0.12, 2: 0.28, 3: 0.44, 5: 0.47}),
    "t2": (8, 3e-4, "FINISHED", "true", [0.20, 0.35], {1: 0.18, 2: 0.33}),
    "t3": (4, 3e-5, "FAILED", None, [0.05], {1: 0.04}),
    "t4": (2, 1e-3, "FINISHED", "false", [0.20, 0.30, 0.60, 0.60, 0.55], {1: 0.21, 2: 0.31, 4: 0.58}),
}
# seed repeats: config (of trial) -> per seed (best val R@1, test R@1 at that epoch)
REPEATS = {"t4": {1: (0.60, 0.55), 2: (0.64, 0.58), 3: (0.59, 0.52)},
           "t1": {1: (0.50, 0.44), 2: (0.47, 0.41), 3: (0.52, 0.47)}}  # fmt: skip


def config(name: str, seed: int = 1) -> ExperimentConfig:
    """The configuration of a trial of ``sweep_a`` (with a given seed)."""
    compos, lr = TRIALS[name][:2]
    d = json.loads(json.dumps(BASE))
    d["model"]["compos_num"], d["optim"]["lr"], d["seed"] = compos, lr, seed
    return ExperimentConfig.from_dict(d)


def tracker_params(cfg: ExperimentConfig) -> dict[str, str]:
    """Params as tune/sweep_tracker.py logs them (JSON lists, str() otherwise)."""
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in cfg.flat().items()}


def val_metrics(r1: float, epoch: int, split: str = "val") -> dict[str, float]:
    """All paper metrics of one evaluation, derived from Recall@1 and the epoch."""
    return {f"{split}/recall_at_1": r1, f"{split}/recall_at_2": r1 + 0.1, f"{split}/recall_at_4": r1 + 0.2,
            f"{split}/recall_at_8": r1 + 0.3, f"{split}/nmi": 0.6 + 0.01 * epoch, f"{split}/f1": 0.3 + 0.01 * epoch,
            f"{split}/map_c": r1 / 3, f"{split}/map_at_r": r1 / 2}  # fmt: skip


def _log(client: MlflowClient, run_id: str, step: int, metrics: dict[str, float]) -> None:
    client.log_batch(run_id, metrics=[Metric(k, float(v), T0 + step * 1000, step) for k, v in metrics.items()])


def _params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def _sweep_run(client, exp, parent, sweep, name, start, params, tags=None):
    tags = {"mlflow.parentRunId": parent, "dcml.sweep": sweep, "dcml.role": "trial", "ray.trial_id": name,
            **(tags or {})}  # fmt: skip
    run = client.create_run(exp, start_time=start, run_name=name, tags=tags).info.run_id
    _params(client, run, params)
    return run


def _parent(client: MlflowClient, sweep: str, tags: dict[str, str] | None = None) -> tuple[str, str]:
    exp = client.create_experiment(sweep)
    tags = {"dcml.sweep": sweep, "dcml.role": "parent", **(tags or {})}
    parent = client.create_run(exp, start_time=T0, run_name=sweep, tags=tags).info.run_id
    _params(client, parent, {"space": "demo", "search": "optuna", "scheduler": "asha", "seed": 0,
                             "gpus_per_trial": 0.0, "cpus_per_trial": 2.0, "max_epochs": 5,
                             "sampled_params": "model.compos_num,optim.lr"})  # fmt: skip
    return exp, parent


def build_sweep_a(client: MlflowClient) -> None:
    exp, parent = _parent(client, "sweep_a")
    for i, (name, (_, _, status, stopped, vals, tests)) in enumerate(TRIALS.items()):
        start = T0 + i * 1_000_000
        run = _sweep_run(client, exp, parent, "sweep_a", name, start, tracker_params(config(name)))
        for epoch, r1 in enumerate(vals, start=1):
            m = {**val_metrics(r1, epoch), "time/train_s": 10.0, "time/eval_s": 2.0, "train/loss": 1.0 / epoch,
                 "epoch": epoch, "val/eval_time_s": 1.5, "val/all/recall_at_1": r1 / 2}  # fmt: skip
            if epoch in tests:
                m.update(val_metrics(tests[epoch], epoch, "test"))
            _log(client, run, epoch, m)
        tags = {"dcml.stopped_early": stopped} if stopped else {"dcml.error": "RuntimeError: boom"}
        client.set_tag(run, *next(iter(tags.items())))
        client.set_terminated(run, status=status, end_time=start + 100_000)
    client.set_terminated(parent, status="FINISHED", end_time=T0 + 10_000_000)


def build_repeat(client: MlflowClient) -> None:
    exp, parent = _parent(client, "sweep_a_repeat", {"dcml.repeat_of": "sweep_a"})
    for i, (trial, per_seed) in enumerate(REPEATS.items()):
        for seed, (val, test) in per_seed.items():
            cfg = config(trial, seed).replace(schedule={"n_epochs": 3})
            tags = {"dcml.repeat_of": "sweep_a", "dcml.config_id": config_id(cfg.flat())}
            start = T0 + (10 * i + seed) * 1_000_000
            run = _sweep_run(client, exp, parent, "sweep_a_repeat", f"{trial}_s{seed}", start,
                             tracker_params(cfg), tags)  # fmt: skip
            for epoch, (v, t) in enumerate([(val - 0.2, test - 0.1), (val, test), (val - 0.05, test + 0.03)], 1):
                _log(client, run, epoch, {**val_metrics(v, epoch), **val_metrics(t, epoch, "test"),
                                          "time/train_s": 20.0, "time/eval_s": 4.0, "epoch": epoch})  # fmt: skip
            client.set_tag(run, "dcml.stopped_early", "false")
            client.set_terminated(run, status="FINISHED", end_time=start + 200_000)
    client.set_terminated(parent, status="FINISHED", end_time=T0 + 90_000_000)


def build_single(client: MlflowClient) -> None:
    """A single run as dcml_core/run_logger.py logs it: lists as ``a,b``, test only at the last epoch."""
    exp = client.create_experiment("single")
    cfg = config("t1").replace(schedule={"n_epochs": 3})
    params = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in cfg.flat().items()}
    params["data_info.n_train"] = "123"
    run = client.create_run(exp, start_time=T0, run_name="dcml-demo-s1", tags={"dcml.method": "dcml"}).info.run_id
    _params(client, run, params)
    for epoch, r1 in enumerate([0.3, 0.5, 0.4], start=1):
        m = {**val_metrics(r1, epoch), "train/epoch_time_s": 30.0, "val/eval_time_s": 3.0, "train/loss": 0.5}
        if epoch == 3:
            m.update({**val_metrics(0.35, epoch, "test"), "test/eval_time_s": 6.0})
        _log(client, run, epoch, m)
    client.set_terminated(run, status="FINISHED", end_time=T0 + 500_000)


def build_store(root: Path) -> str:
    """Create the store under ``root``; returns its tracking URI."""
    uri = f"sqlite:///{Path(root) / 'mlflow.db'}"
    client = MlflowClient(uri)
    build_sweep_a(client)
    build_repeat(client)
    build_single(client)
    _parent(client, "empty_sweep")
    return uri
