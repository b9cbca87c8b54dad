"""Ray Tune sweeps of the DCML/DiVA engine, logged to MLflow (with search_spaces/, all of the project's Ray).

``run.py`` (the command) -> ``cli.py`` (flags, settings) -> ``validation.py`` (checks before Ray) ->
``driver.py`` (Ray, MLflow parent run, fit, summary) with ``cluster.py`` (start/join Ray, cluster checks),
``tuner.py`` (searcher, scheduler, Tuner), ``trainable.py`` (one trial), ``optuna_search.py`` (PRUNED for
ASHA-stopped trials), ``mlflow_callback.py`` + ``sweep_tracker.py`` (the single MLflow writer),
``progress.py`` and ``summary.py`` (output). See docs/sweeps.md.
"""
