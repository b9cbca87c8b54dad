"""Helpers shared by the tune tests (no tests here): tiny demo data, ports, processes stopped by PID.

Everything a test starts is stopped by PID: commands run in their own session (``start_new_session``), and the
processes of that session (Ray daemonises its gcs/raylet/agents, the MLflow server forks workers) are found by
session id and killed one by one. Nothing is ever stopped by name, and ``ray stop`` is never called.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_TINY: list[Path] = []


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A tiny copy of the demo data set (8 images per class, 24 px), built once per session in a few seconds.

    Sweeps on it with the ``smoke`` space run one optimiser step per epoch, so an epoch takes about a second.
    """
    if not _TINY:
        from dcml_core.data import ensure_demo_dataset

        _TINY.append(
            ensure_demo_dataset(tmp_path_factory.mktemp("tune_demo") / "tiny", n_per_class=8, image_size=24)
        )
    return _TINY[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def short_tmp() -> Path:
    """A short temporary folder for Ray's session files (its socket paths must stay under ~107 characters),
    removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sweep_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for the commands a test starts: no Ray token auth, a private Ray temp dir, no inherited
    MLflow store or Ray address, and ``PYTHONPATH`` = this checkout (the commands import the package; this
    makes them run the code under test even where another checkout of it is installed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_TMPDIR=str(ray_tmp),
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start a command in its own session, output to ``log``."""
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it; closed when the child exits
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def run_sweep_cli(args: list[str], env: dict[str, str], log: Path, cwd: Path, timeout: float) -> int:
    """Run ``tune/run.py`` to completion (own session; leftovers of the session killed by PID)."""
    proc = start([sys.executable, str(REPO / "tune" / "run.py"), *args], env, log, cwd)
    try:
        return proc.wait(timeout=timeout)
    finally:
        kill_session(proc.pid)


def session_pids(sid: int) -> list[int]:
    """Live processes (zombies excluded) whose session id is ``sid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, each process of session ``sid``, one PID at a time (``grace=0``: SIGKILL)."""
    steps = ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)) if grace > 0 else ((signal.SIGKILL, 5.0),)
    for sig, wait in steps:
        pids = session_pids(sid)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not pids or wait_for(lambda: not session_pids(sid), wait):
            return


def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns whether it held."""
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(every)
    return condition()


def tail(path: Path, n: int = 60) -> str:
    """The last lines of a log, for assertion messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers HTTP 200 (e.g. an ``mlflow server``'s ``/health``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback test server
            return response.status == 200
    except OSError:
        return False
