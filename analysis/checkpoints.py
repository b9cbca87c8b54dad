"""The best checkpoints of a sweep, as the sweep logs them: MLflow artifacts ``checkpoint/`` of its best runs.

At the end of a sweep the driver uploads the best checkpoint (by validation Recall@1) of each of the best
trials (``tune/driver.py``, ``TOP_K_ARTIFACTS``) to the trial's MLflow run, under the artifact path
``checkpoint``; single runs (``python -m dcml_core.train``) upload theirs the same way. This module finds them
and gives a local folder for each (the artifact folder itself for a local store, a download otherwise).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow.artifacts
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from analysis.mlflow_io import SweepData

CHECKPOINT_ARTIFACT = "checkpoint"


def checkpoint_uris(sweep: SweepData) -> dict[str, str]:
    """``{run_id: artifact URI of its checkpoint folder}`` for the trial runs that logged one."""
    client = MlflowClient(sweep.tracking_uri)
    out = {}
    for run_id in sweep.trials["run_id"]:
        names = {f.path for f in client.list_artifacts(run_id)}
        if CHECKPOINT_ARTIFACT in names:
            out[run_id] = f"runs:/{run_id}/{CHECKPOINT_ARTIFACT}"
    return out


def best_checkpoint_trials(sweep: SweepData, k: int = 3) -> pd.DataFrame:
    """The ``k`` best trials by validation objective that have a checkpoint, best first.

    The trial table's rows with a column ``checkpoint`` (artifact URI); empty when no run logged one.
    """
    if k < 1:
        raise ValueError(f"k must be a positive number of trials, got {k}")
    uris = checkpoint_uris(sweep)
    trials = sweep.trials[sweep.trials["run_id"].isin(uris)].copy()
    trials = trials[np.isfinite(trials["objective"].astype(float))]
    trials["checkpoint"] = trials["run_id"].map(uris)
    return trials.sort_values("objective", ascending=False, kind="stable").head(k).reset_index(drop=True)


def local_artifacts(artifact_uri: str | None) -> Path | None:
    """The folder of a run's artifacts when the store keeps them on this file system (``file:`` URI), else None."""
    if not isinstance(artifact_uri, str) or not artifact_uri.startswith("file:"):
        return None
    return Path(url2pathname(urlparse(artifact_uri).path))


def local_checkpoint(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> Path:
    """A local folder holding the checkpoint at ``uri`` (``runs:/<run id>/checkpoint``).

    A local artifact store is read in place; a remote one is downloaded into ``cache_dir/<run id>`` (once).
    """
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    local = local_artifacts(MlflowClient(tracking_uri).get_run(run_id).info.artifact_uri)
    if local is not None:  # a local artifact store: the folder itself
        return local / (path or CHECKPOINT_ARTIFACT)
    dst = None
    if cache_dir is not None:
        dst = Path(cache_dir) / run_id
        if (dst / CHECKPOINT_ARTIFACT).is_dir():
            return dst / CHECKPOINT_ARTIFACT
        dst.mkdir(parents=True, exist_ok=True)
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=None if dst is None else str(dst), tracking_uri=tracking_uri
    )
    return Path(path)
