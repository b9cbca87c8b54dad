"""Ray Tune sweeps of the DCML/DiVA engine, logged to MLflow (with search_spaces/, all of the project's Ray).

``run.py`` (the command: parses the flags, starts ``store_warmup.py`` for a new MLflow store) -> ``command.py``
(what it runs) with ``cli.py`` (flags, exit codes) -> ``settings.py`` (the sweep's settings, saved for
``--resume``) -> ``plan.py`` (what the trials run: a search, or seed repeats from ``repeats.py``) ->
``validation.py`` + ``preflight.py`` (checks before Ray) -> ``driver.py`` (Ray, MLflow parent run, fit, summary)
with ``cluster.py`` (start/join Ray, cluster checks), ``tuner.py`` (the Tuner), ``trainable.py`` (one trial, with
``trial_recovery.py``), ``optuna_search.py`` (PRUNED for ASHA-stopped trials), ``mlflow_callback.py`` ->
``mlflow_writer.py`` (the single, idempotent MLflow writer; ``trial_run.py``: what a trial's run holds;
``sync_mlflow.py``: replay from Ray's results), ``trial_outcome.py`` (how a trial ended), ``progress.py`` and
``summary.py`` (output). See docs/sweeps.md.
"""
