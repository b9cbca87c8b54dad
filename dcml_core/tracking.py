"""Small MLflow helpers shared by the two commands that write to MLflow: ``python -m dcml_core.train`` and the
sweep callback in ``tune/``. The engine and everything under it know nothing of tracking.

Default store: ``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<current folder>/mlflow.db`` (absolute,
so Ray workers that change directory write to the same file). MLflow >= 3.13 refuses the old ``./mlruns``
file store; a plain directory given by the user is turned into ``sqlite:///<dir>/mlflow.db``.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

DEFAULT_DB_NAME = "mlflow.db"
PACKAGES = ("torch", "torchvision", "ray", "mlflow", "optuna", "faiss-cpu", "faiss-gpu", "numpy", "pandas")


class TrackingError(RuntimeError):
    """The MLflow tracking URI is invalid or its server cannot be reached."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """A usable tracking URI: http(s)://, sqlite:///, postgresql://, mysql://... or a folder for a SQLite file."""
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
    if path.suffix == ".db":
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / DEFAULT_DB_NAME}"


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
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user-given server
            if response.status != 200:
                raise TrackingError(f"MLflow server {uri} answered {response.status} on {url}")
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({err}); start it (docs/sweeps.md, cluster recipe) or pass "
            "--mlflow-uri with a reachable server or a sqlite:/// path"
        ) from None


def ui_command(uri: str) -> str:
    """The shell command that opens the MLflow UI on this store (loopback only)."""
    if is_remote(uri):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def git_commit(repo: Path | None = None) -> str:
    """The current git commit of the code (``unknown`` outside a checkout)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers (as MLflow tags ``version.<name>``)."""
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
