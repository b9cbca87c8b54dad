"""Starting or joining Ray, and the checks that need the cluster (nodes, GPUs) before any trial starts."""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import ray

from dcml_core.tracking import is_remote

REPO_ROOT = Path(__file__).resolve().parents[1]


class ClusterError(RuntimeError):
    """The Ray cluster cannot run this sweep as configured; the message says what to change."""


def worker_runtime_env() -> dict[str, Any]:
    """Worker environment: ``import tune`` / ``dcml_core`` work installed or not (same path on all nodes); passive
    OpenMP waiting."""
    path = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # Trials share cores (several per machine, data loaders, the driver): OpenMP threads that spin-wait for a
    # core held by another process made torch 10-20x slower here (docs/performance.md); sleeping threads only
    # add wake-up latency. An explicit setting of the user wins.
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path)), "OMP_WAIT_POLICY": wait_policy}}


def check_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at ``--address HOST:PORT`` (``ray.init`` would retry for minutes)."""
    if not address or address == "auto" or address.startswith("ray://"):
        return
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ClusterError(
            f"no Ray head answers at --address {address} ({err.strerror or err}); start one with "
            f"`ray start --head --port {port}` (docs/sweeps.md 'Clusters') or drop --address for a local Ray"
        ) from None


class _DropDefaultAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def quiet_default_auth_notice() -> None:
    """Ray 2.60 announces on every local start that it turned token authentication on, with how to turn it off;
    that is the secure default this project keeps, so the notice is dropped (Ray's warning when authentication
    is *disabled*, and ours, stay)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropDefaultAuthNotice) for f in logger.filters):
        logger.addFilter(_DropDefaultAuthNotice())


# A local Ray starts one idle worker per CPU as it boots (and again for the first driver). A trial never runs in
# one: Tune gives every trainable actor a runtime environment of its own (``PL_DISABLE_FORK``), and Ray starts a new
# worker for an actor whose runtime environment differs from the idle workers'. On two cores those idle workers
# only compete with Ray's start for CPU (docs/performance.md).
NO_PRESTARTED_WORKERS = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}

# The raylet connects to its own object store, started in a thread just before, through a Unix socket; when the
# store is not listening yet, the connection is retried after ``raylet_client_connect_timeout_milliseconds``
# (default 1000). That race went either way: `ray.init` took 2.0 s or 3.0 s on 2 cores, about half of the time
# each (docs/performance.md). Retrying every 100 ms, 100 times, keeps the same 10 s of patience before a failure.
FAST_LOCAL_CONNECT = {"raylet_client_connect_timeout_milliseconds": 100, "raylet_client_num_connect_attempts": 100}
LOCAL_SYSTEM_CONFIG = {**NO_PRESTARTED_WORKERS, **FAST_LOCAL_CONNECT}


def start_ray(address: str | None) -> None:
    """Join ``address`` (``auto`` or HOST:PORT) or start a local Ray sized to this machine, without idle workers
    started ahead (:data:`NO_PRESTARTED_WORKERS`) and without a second lost to a connection retry
    (:data:`FAST_LOCAL_CONNECT`).

    A joined cluster gets the workers' environment as the job's ``runtime_env``. A local Ray inherits it from this
    process instead (its raylet and every worker it starts)."""
    if address:
        try:
            ray.init(address=address, runtime_env=worker_runtime_env(), logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(
                f"cannot join the Ray cluster at --address {address}: {err}. Start it first "
                "(docs/sweeps.md 'Clusters': ray start --head ...) or drop --address for a local Ray"
            ) from None
    else:
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            print(
                "warning: RAY_AUTH_MODE=disabled: the local Ray cluster accepts unauthenticated connections on "
                "its ports (Ray binds them on every interface); unset it outside tests",
                file=sys.stderr,
            )
        os.environ.update(worker_runtime_env()["env_vars"])  # inherited by the raylet and every worker it starts
        quiet_default_auth_notice()
        # no web UI; Ray 2.60 turns token auth on by default
        ray.init(include_dashboard=False, logging_level="WARNING", _system_config=LOCAL_SYSTEM_CONFIG)


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def check_tracking_for_cluster(tracking_uri: str) -> None:
    """A local MLflow store (sqlite) is not for a multi-node cluster: require a server reachable over HTTP."""
    nodes = alive_nodes()
    if len(nodes) > 1 and not is_remote(tracking_uri):
        raise ClusterError(
            f"the Ray cluster has {len(nodes)} nodes but the MLflow store {tracking_uri} is local to this "
            "machine: "
            "a local MLflow store (sqlite) cannot be shared by the nodes and their users. Start "
            "`mlflow server --backend-store-uri sqlite:///PATH/mlflow.db --host 127.0.0.1 --port 5000` "
            "(or a postgresql:// database) and pass --mlflow-uri http://HOST:5000 (docs/sweeps.md 'Clusters')"
        )


def default_gpus_per_trial() -> float:
    """1 when the cluster has GPUs, else 0 (CPU-only clusters work)."""
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def check_resources(cpus: float, gpus: float) -> None:
    """Fail before the sweep when no node can ever place one trial (Tune would wait forever)."""
    fits = [
        n
        for n in alive_nodes()
        if n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus
    ]
    if not fits:
        have = [(n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in alive_nodes()]
        raise ClusterError(
            f"no node has {cpus:g} CPUs and {gpus:g} GPUs for one trial (nodes have CPU/GPU {have}); lower "
            "--cpus-per-trial / --gpus-per-trial"
        )


def trial_slots(cpus: float, gpus: float, max_concurrent: int | None, num_samples: int) -> int:
    """Trials that can run at once: as many as each node's CPUs and GPUs hold, at most ``max_concurrent`` and
    the number of trials (the sweep's overhead is measured against this many slots)."""
    fit = 0
    for node in alive_nodes():
        have = node["Resources"]
        by_cpu = math.floor(have.get("CPU", 0) / cpus + 1e-9) if cpus > 0 else num_samples
        by_gpu = math.floor(have.get("GPU", 0) / gpus + 1e-9) if gpus > 0 else num_samples
        fit += min(by_cpu, by_gpu)
    return max(1, min(fit, max_concurrent or fit, num_samples))
