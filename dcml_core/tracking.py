"""Small MLflow helpers shared by the two commands that write to MLflow: ``python -m dcml_core.train`` and the
sweep writer in ``tune/``, and read by ``analysis/``. The engine and everything under it know nothing of tracking.

Default store: ``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<current folder>/mlflow.db`` (absolute,
so Ray workers that change directory write to the same file). MLflow >= 3.13 refuses the old ``./mlruns``
file store; a plain directory given by the user is turned into ``sqlite:///<dir>/mlflow.db``.

What a run looks like in MLflow is defined here once: the ``dcml.*`` tags, MLflow's own system tags
(:func:`system_tags`), the experiment kind that makes the MLflow 3 UI open on the runs table, how a parameter
value is written as text (:func:`param_text`, read back by :func:`param_from_text`) and the seed-free
configuration id (:func:`config_id`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_DB_NAME = "mlflow.db"
PACKAGES = ("torch", "torchvision", "ray", "mlflow", "optuna", "faiss-cpu", "faiss-gpu", "numpy", "pandas")

# Tags of our runs (analysis/ reads them): the sweep and role of a run, Ray's trial id, how a trial ended,
# the sampled parameter names, seed repeats (the original sweep, the seed-free configuration id).
SWEEP_TAG, ROLE_TAG, TRIAL_TAG = "dcml.sweep", "dcml.role", "ray.trial_id"
PARENT_ROLE, TRIAL_ROLE = "parent", "trial"
STOPPED_TAG, ERROR_TAG, SAMPLED_TAG = "dcml.stopped_early", "dcml.error", "dcml.sampled"
REPEAT_TAG, CONFIG_TAG = "dcml.repeat_of", "dcml.config_id"
# the space's published configuration (trial 1 of every sweep); the epoch a run's embeddings collapsed at
BASELINE_TAG, COLLAPSED_TAG = "dcml.baseline", "dcml.collapsed"
DEVICE_TAG, FAISS_TAG = "dcml.device", "dcml.faiss"  # what a trial computed on, reported with its results
PARENT_RUN_TAG, NOTE_TAG = "mlflow.parentRunId", "mlflow.note.content"  # MLflow's nesting and run description
# MLflow 3 picks an experiment's start page from this tag; "custom_model_development" is its classic ML view
# (the runs table), instead of the GenAI overview of traces it shows for an untagged experiment.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Left out of the configuration id: the seed (what seed repeats vary) and settings that cannot change the
# numbers or that differ between machines (a data folder, the number of loader processes).
# Where a sweep keeps its searcher state, read by tune/ (writes) and analysis/ (joins Ray, Optuna and MLflow):
# <storage>/<sweep>/sweep_state/optuna.db, each Optuna trial naming its Ray trial in a user attribute.
STATE_SUBDIR, OPTUNA_DB, RAY_TRIAL_ATTR = "sweep_state", "optuna.db", "ray_trial_id"
CONFIG_ID_EXCLUDED = ("seed", "data.root", "data.num_workers", "checkpoint_every")
PARAM_LIMIT = 6000  # MLflow's longest parameter value


class TrackingError(RuntimeError):
    """The MLflow tracking URI is invalid or its server cannot be reached."""


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI that ``uri`` names, without creating anything: http(s)://, sqlite:///, postgresql://,
    mysql://... as given; a ``.db`` file or a folder (for its ``mlflow.db``) as ``sqlite:///``; none: ``$MLFLOW_TRACKING_URI``
    or ``./mlflow.db``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{Path.cwd().resolve() / DEFAULT_DB_NAME}"
    if "://" in uri or uri.startswith("sqlite:"):
        if uri.startswith("file:"):
            raise TrackingError(
                f"tracking URI {uri!r} is MLflow's file store, which MLflow 3.13+ refuses; use "
                "sqlite:///PATH/mlflow.db or an http:// server"
            )
        return uri
    path = Path(uri).expanduser().resolve()
    return f"sqlite:///{path if path.suffix == '.db' else path / DEFAULT_DB_NAME}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """A usable tracking URI (:func:`tracking_uri`); the folder of a SQLite file given as a path is created."""
    resolved = tracking_uri(uri)
    given = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if given and "://" not in given and not given.startswith("sqlite:"):
        Path(resolved[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return resolved


def is_remote(uri: str) -> bool:
    """True for a tracking server reached over HTTP (several processes may write to it)."""
    return uri.startswith(("http://", "https://"))


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any work, when an HTTP tracking server does not answer its health check."""
    if not is_remote(uri):
        if uri.startswith("sqlite:///"):
            folder = Path(uri[len("sqlite:///") :]).parent
            if not folder.exists() or not os.access(folder, os.W_OK):
                raise TrackingError(f"cannot write the MLflow database in {folder} (tracking URI {uri})")
        return
    problem = server_problem(uri, timeout)
    if problem:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({problem}); start it (docs/sweeps.md, cluster recipe) or "
            "pass --mlflow-uri with a reachable server or a sqlite:/// path"
        )


def server_problem(uri: str, timeout: float) -> str | None:
    """Why the server at ``uri`` does not answer its ``/health`` check, or None when it answers (a status below
    500 is an answer: e.g. 401 from a server behind authentication)."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()  # noqa: S310 - user's server
    except urllib.error.HTTPError as err:
        return None if err.code < 500 else str(err)
    except OSError as err:
        return str(err)
    return None


def ui_command(uri: str, experiment_id: str | None = None) -> str:
    """The shell command that opens the MLflow UI on this store (loopback only) and, with ``experiment_id``,
    the address of the sweep's trials in it (:func:`ui_trials_url`)."""
    base = uri.rstrip("/") if is_remote(uri) else "http://127.0.0.1:5000"
    command = f"open {uri} in a browser" if is_remote(uri) else f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    return command + (f", then {ui_trials_url(base, experiment_id)}" if experiment_id else "")


TRIALS_VIEW = "dcml-trials"  # the MLflow UI view of a sweep's trials: experiment tag mlflow.sharedViewState.<key>
VIEW_TAG_PREFIX = "mlflow.sharedViewState."


def trials_view_state(sampled: tuple | list = ()) -> dict[str, Any]:
    """The MLflow 3 UI's view of a sweep's trials: listed flat (not folded under the sweep's parent run), best
    validation Recall@1 first, with the columns a researcher compares (best validation and test Recall@1, the
    starting network's test Recall@1, the epoch validation selected, the sampled parameters), every trial drawn
    in the charts (the UI's default shows the first 10), and the charts filtered to the validation curves that
    select and diagnose (Recall@1, NMI, embedding spread; the filter box shows the regex, clear it for all)."""
    from dcml_core.metric_names import OBJECTIVE

    metrics = [f"best/{OBJECTIVE}", "best/test/recall_at_1", "start/test/recall_at_1", "best/epoch"]
    columns = [f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in sampled]
    return {"searchFilter": f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}'", "orderByKey": columns[0], "orderByAsc": False,
            "selectedColumns": columns, "columnOrder": columns, "runsHiddenMode": "SHOW_ALL",
            "chartsSearchFilter": "^val/(recall_at_1|nmi|embedding_spread)$"}  # fmt: skip


def set_trials_view(client: Any, experiment_id: str, sampled: tuple | list = ()) -> None:
    """Store :func:`trials_view_state` on the experiment (where the UI's "share view" keeps views); idempotent."""
    value, key = json.dumps(trials_view_state(sampled)), VIEW_TAG_PREFIX + TRIALS_VIEW
    if client.get_experiment(experiment_id).tags.get(key) != value:
        client.set_experiment_tag(experiment_id, key, value)


def ui_trials_url(base: str, experiment_id: str, charts: bool = False) -> str:
    """The MLflow 3 UI page of a sweep's trial runs (:func:`trials_view_state`, stored by the sweep).
    ``workflowType`` opens the classic training view (a fresh browser opens MLflow 3 on its GenAI overview,
    whatever the experiment's kind); ``compareRunsMode=CHART`` shows the trials' curves. The URL names no filter
    or sort itself: the UI ignores a shared view when the address carries its own."""
    query = f"viewStateShareKey={TRIALS_VIEW}&workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}/runs?{query}" + ("&compareRunsMode=CHART" if charts else "")


def git_state(repo: Path | None = None) -> tuple[str | None, bool]:
    """(commit of the code, whether tracked files differ from it); (None, False) outside a checkout."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return head, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, False


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers (as MLflow tags ``version.<name>``)."""
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.lru_cache(maxsize=8)
def system_tags(command: str | None = None) -> dict[str, str]:
    """MLflow's own run tags (``mlflow.user``, ``mlflow.source.name``/``type``, ``mlflow.source.git.commit``
    and ``.dirty``) as ``mlflow.start_run`` would set them, the package versions and the command line."""
    from mlflow.tracking.context.git_context import GitRunContext
    from mlflow.tracking.context.registry import resolve_tags

    tags = resolve_tags(ignore=[GitRunContext])  # the commit is the package's, not the calling script's
    commit, dirty = git_state()
    if commit:
        tags.update({"mlflow.source.git.commit": commit, "mlflow.source.git.dirty": str(dirty).lower()})
    if command:
        tags["dcml.command"] = command
    return {**tags, **package_versions()}


def open_experiment(client: Any, name: str) -> str:
    """The id of the active experiment ``name``, created if missing; tagged with :data:`EXPERIMENT_KIND`.

    A new experiment of a SQLite store keeps its artifacts next to the database file
    (``<folder of the .db>/mlartifacts/<name>``), not in the current folder; a server decides for itself.
    """
    exp = client.get_experiment_by_name(name)
    if exp is None:
        uri, location = client.tracking_uri, None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / name).resolve().as_uri()
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    if exp.lifecycle_stage != "active":
        raise TrackingError(
            f"MLflow experiment '{name}' is deleted in {client.tracking_uri}; restore it "
            "(mlflow experiments restore) or choose another name"
        )
    for key, value in EXPERIMENT_KIND.items():
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def param_text(value: Any) -> str:
    """A parameter value as MLflow stores it: lists and dicts as JSON, everything else as ``str``."""
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:PARAM_LIMIT]


def param_from_text(text: str) -> Any:
    """The value :func:`param_text` wrote (JSON lists and dicts, ``None``; other values stay text and are
    typed by ``ExperimentConfig.from_dict``)."""
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return None if text == "None" else text


def config_id(flat: Mapping[str, Any]) -> str:
    """12 hex digits identifying a typed flat configuration (``ExperimentConfig.flat()``) up to its seed
    (:data:`CONFIG_ID_EXCLUDED` left out); ``analysis.params.config_id`` types MLflow params into this form."""
    kept = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items() if k not in CONFIG_ID_EXCLUDED}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
