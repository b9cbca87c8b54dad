"""MLflow logging of one single run (``python -m dcml_core.train``): one process, one writer.

The run id is kept next to the checkpoints (``<save dir>/mlflow_run.json``), so ``--resume`` continues the same
MLflow run instead of opening a second one. Tags, parameter encoding and the experiment's kind are those of the
sweeps (:mod:`dcml_core.tracking`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from dcml_core.config import ExperimentConfig
from dcml_core.tracking import (
    ERROR_TAG,
    check_tracking_uri,
    open_experiment,
    param_text,
    resolve_tracking_uri,
    system_tags,
)

RUN_FILE = "mlflow_run.json"


class RunLogger:
    """Parameters, per-epoch metrics (step = epoch), final metrics and the checkpoint of one run."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        run_name: str,
        save_dir: Path,
        resume: bool = False,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment, self.run_name, self.save_dir, self.resume = experiment, run_name, Path(save_dir), resume
        self.client = None
        self.run_id: str | None = None
        if enabled:
            check_tracking_uri(self.uri)

    def start(self, cfg: ExperimentConfig, data_summary: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow import MlflowClient

        self.client = MlflowClient(self.uri)
        exp_id = open_experiment(self.client, self.experiment)
        run_file = self.save_dir / RUN_FILE
        if self.resume and run_file.is_file():
            self.run_id = json.loads(run_file.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {
            **system_tags(command=" ".join(sys.argv)),
            "dcml.method": cfg.model.method,
            "dcml.dataset": cfg.data.dataset,
        }
        run = self.client.create_run(exp_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self.save_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"run_id": self.run_id, "tracking_uri": self.uri}))
        params = {**cfg.flat(), **{f"data_info.{k}": v for k, v in data_summary.items()}}
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, param_text(v)) for k, v in params.items()])

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if not self.enabled or self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=batch)

    def set_tag(self, key: str, value: str) -> None:
        if self.enabled and self.client is not None:
            self.client.set_tag(self.run_id, key, value)

    def finish(self, final: dict[str, float], checkpoint_dir: Path | None, status: str, error: str = "") -> None:
        if not self.enabled or self.client is None:
            return
        if error:
            self.client.set_tag(self.run_id, ERROR_TAG, error[:5000])
        if checkpoint_dir is not None and Path(checkpoint_dir).is_dir():
            self.client.log_artifacts(self.run_id, str(checkpoint_dir), artifact_path="checkpoint")
        self.client.set_terminated(self.run_id, status=status)

