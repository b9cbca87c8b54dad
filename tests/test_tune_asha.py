"""A real Ray Tune sweep (local Ray, 2 CPUs) where ASHA stops trials early: Optuna records them PRUNED, MLflow
tags them stopped early. The trainable is a toy whose score is fixed by its config, so the outcome is
deterministic (seeded TPE, one trial at a time)."""

from __future__ import annotations

import optuna
import pytest
import ray
from mlflow import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from dcml_core.metric_names import EPOCH, OBJECTIVE
from tests.test_tune_support import REPO, short_tmp  # noqa: F401  (fixture)
from tune import mlflow_callback
from tune.mlflow_callback import MLflowSweepCallback, writer_for
from tune.optuna_search import PrunedAwareOptunaSearch, study_storage

MAX_T = 4


def toy_trial(config: dict) -> None:
    """Validation score x * epoch / MAX_T: a higher x is better at every epoch."""
    for epoch in range(1, MAX_T + 1):
        tune.report({OBJECTIVE: config["x"] * epoch / MAX_T, EPOCH: epoch, "train/loss": 1.0 - config["x"]})


@pytest.fixture()
def local_ray(short_tmp):  # noqa: F811
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(short_tmp),
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


def test_asha_stopped_trials_are_pruned_in_optuna_and_tagged_in_mlflow(tmp_path, local_ray) -> None:
    mlflow_callback._WRITERS.clear()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer = writer_for(uri, "asha")
    writer.open({"space": "toy"}, {})
    searcher = PrunedAwareOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=1),
        max_t=MAX_T,
        study_name="asha",
        storage=study_storage(str(tmp_path / "optuna.db")),
    )
    tuner = tune.Tuner(
        toy_trial,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE,
            mode="max",
            num_samples=6,
            max_concurrent_trials=1,
            search_alg=searcher,
            reuse_actors=True,
            scheduler=ASHAScheduler(time_attr=EPOCH, max_t=MAX_T, grace_period=1, reduction_factor=2),
        ),
        run_config=tune.RunConfig(
            name="asha",
            storage_path=str(tmp_path / "ray"),
            verbose=0,
            callbacks=[MLflowSweepCallback(uri, "asha", MAX_T)],
        ),
    )
    results = tuner.fit()
    assert results.num_errors == 0

    epochs = {r.metrics["trial_id"]: r.metrics[EPOCH] for r in results}
    stopped = {t for t, e in epochs.items() if e < MAX_T}
    assert 1 <= len(stopped) < len(epochs), epochs  # ASHA stopped some trials, not all

    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    by_x = {round(r.config["x"], 12): r.metrics["trial_id"] for r in results}
    assert len(study.trials) == 6
    for ot in study.trials:
        trial_id = by_x[round(ot.params["x"], 12)]
        n = epochs[trial_id]
        assert ot.state.name == ("PRUNED" if trial_id in stopped else "COMPLETE"), (trial_id, n)
        # every epoch the trial ran is an intermediate value, including the one ASHA stopped it on
        assert sorted(ot.intermediate_values) == list(range(1, n + 1))
        assert ot.value == pytest.approx(ot.params["x"] * n / MAX_T)

    client = MlflowClient(uri)
    for trial_id, n in epochs.items():
        run = client.get_run(writer.find(trial_id).run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["dcml.stopped_early"] == ("true" if trial_id in stopped else "false")
        assert [m.step for m in client.get_metric_history(run.info.run_id, OBJECTIVE)] == list(
            range(1, n + 1)
        )
    mlflow_callback._WRITERS.clear()
