"""What every node of the Ray cluster will give a trial, checked on that node before any trial starts.

One Ray task per alive node, pinned to it (``NodeAffinitySchedulingStrategy``) and given the trial's GPU share
where a trial fits (so Ray sets ``CUDA_VISIBLE_DEVICES`` as it will for a trial), reports: torch and its CUDA
build, the driver, whether CUDA works and the GPUs torch and faiss see, the faiss build, the data root (found, with
its image counts), the pretrained weights, and whether the sweep storage is **shared**: the driver writes a token
file that every node must read, and every node writes one that the driver must read. One table, then the
problems. Every sweep runs this before its first trial (a problem refuses the sweep); ``--check-cluster`` runs it
with a CUDA matrix product on every node as well, prints the table and exits (0: usable, 2: not). A sweep on the
local Ray it started, one node without GPUs, checks in the driver's process (no worker to start first).
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from typing import Any

import ray
from tabulate import tabulate

from dcml_core.config import ExperimentConfig
from dcml_core.device_info import cuda_smoke_test, cuda_status, describe_cuda, describe_faiss, faiss_build
from dcml_core.tracking import is_remote
from tune.cluster import ClusterError, alive_nodes

ANSWER_TIMEOUT_S = 120.0
CHECK_FOLDER = ".dcml-cluster-check"


@dataclass(frozen=True)
class NodeCheck:
    """What one node checks: the sweep's first configuration, its storage, the trial's GPU share."""

    config: dict[str, Any]
    storage: str
    token: str  # the driver's token file is <storage>/<CHECK_FOLDER>-<token>/driver
    gpus: float  # the GPU share a trial gets on this node (0: none)
    smoke: bool  # also run a matrix product on every GPU (--check-cluster)


def _storage(storage: str) -> tuple[Any, str]:
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(storage)  # a local absolute path or any URI Ray's storage accepts


def _token_dir(check: NodeCheck) -> str:
    return f"{_storage(check.storage)[1].rstrip('/')}/{CHECK_FOLDER}-{check.token}"


def _data(cfg: ExperimentConfig) -> str:
    from dcml_core.data import load_records

    if cfg.data.dataset == "demo" and not cfg.data.root:
        return "ok: embedded demo data (built on first use)"
    records = load_records(cfg.data.dataset, cfg.data.root)
    return f"ok: {len(records.train)} train / {len(records.test)} test images"


def _weights(cfg: ExperimentConfig) -> str:
    from dcml_core.models.backbones import parse_arch, resolve_weights

    pretrained = cfg.model.resolved_pretrained(cfg.data.dataset)
    found = resolve_weights(parse_arch(cfg.model.arch).backbone, pretrained)
    return f"ok: {found}" if found else "ok: none needed"


def _share(check: NodeCheck, node_id: str) -> str:
    """Read the driver's token, write this node's: the storage is the same folder here."""
    filesystem, _ = _storage(check.storage)
    folder = _token_dir(check)
    with filesystem.open_input_stream(f"{folder}/driver") as f:
        if f.read().decode() != check.token:
            return f"no: {folder}/driver holds another token"
    with filesystem.open_output_stream(f"{folder}/node-{node_id}") as f:
        f.write(check.token.encode())
    return "ok"


def _attempt(fn: Any, *args: Any) -> str:
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - every failure is a row of the table
        return f"no: {type(err).__name__}: {' '.join(str(err).split())}"


def check_node(check: NodeCheck, node_id: str) -> dict[str, Any]:
    """Run on the node: one row of the table (plain values)."""
    cfg = ExperimentConfig.from_dict(check.config)
    status = cuda_status()
    row: dict[str, Any] = {"host": socket.gethostname(), "cuda": status, "cuda_text": describe_cuda(status)}
    try:
        row["faiss"] = describe_faiss(faiss_build())
    except Exception as err:  # noqa: BLE001 - a node without faiss is a problem, not a crash
        row["faiss"] = f"no: {err}"
    row["data"] = _attempt(_data, cfg)
    row["weights"] = _attempt(_weights, cfg)
    row["storage"] = _attempt(_share, check, node_id)
    row["smoke"] = cuda_smoke_test() if check.smoke and status["cuda_available"] else ""
    return row


def _fits(node: dict[str, Any], cpus: float, gpus: float) -> bool:
    have = node["Resources"]
    return have.get("CPU", 0) >= cpus and have.get("GPU", 0) >= gpus


def problems_of(node: str, row: dict[str, Any], gpus: float, fits: bool) -> list[str]:
    """What on a node would break the trials placed there (none where no trial fits)."""
    if not fits:
        return []
    out = []
    if gpus > 0 and (not row["cuda"]["cuda_available"] or row["cuda"]["devices"] < 1):
        out.append(f"{node}: Ray gives trials {gpus:g} GPU here but CUDA is not usable: {row['cuda_text']}")
    for key in ("faiss", "data", "weights", "storage"):
        if row[key].startswith("no"):
            what = "the storage is not shared with the driver" if key == "storage" else key
            out.append(f"{node}: {what}: {row[key][4:]}")
    if row["smoke"] not in ("", "ok"):
        out.append(f"{node}: a matrix product on the GPU failed: {row['smoke']}")
    return out


def run_check(
    config: dict[str, Any], storage: str, cpus: float, gpus: float, smoke: bool = False, in_process: bool = False
) -> tuple[str, list[str]]:
    """Check every alive node (see the module); returns the table and the problems (empty: usable).
    ``in_process``: the only node is this machine, without GPUs: the driver's own process checks it (a trial's
    worker runs the same interpreter and sees the same files), which spares a worker start before the sweep."""
    token, nodes = uuid.uuid4().hex, alive_nodes()
    filesystem, root = _storage(storage)
    folder = f"{root.rstrip('/')}/{CHECK_FOLDER}-{token}"
    created = _missing_dirs(filesystem, root)  # removed again: a refused sweep leaves nothing behind
    filesystem.create_dir(folder, recursive=True)
    try:
        with filesystem.open_output_stream(f"{folder}/driver") as f:
            f.write(token.encode())
        shares = [gpus if _fits(node, cpus, gpus) and gpus > 0 else 0 for node in nodes]
        checks = [NodeCheck(config, storage, token, share, smoke) for share in shares]
        rows = _answers(nodes, checks, in_process)
        table, problems = [], []
        for node, row in zip(nodes, rows):
            name, fits = node["NodeManagerAddress"], _fits(node, cpus, gpus)
            if row is None:
                problems.append(f"{name}: did not answer within {ANSWER_TIMEOUT_S:g} s (are its GPUs busy?)")
                continue
            back = _attempt(_read_back, filesystem, folder, node["NodeID"], token)
            if back != "ok" and row["storage"] == "ok":
                row["storage"] = f"no: the driver cannot read what this node wrote ({back})"
            problems += problems_of(name, row, gpus, fits)
            table.append(_table_row(name, node, row, fits, smoke))
    finally:
        filesystem.delete_dir(folder)
        _remove_empty(filesystem, created)
    headers = ["node", "CPU/GPU (Ray)", "trials", "torch", "CUDA build", "driver", "CUDA", "GPUs torch/faiss",
               "faiss", "data", "weights", "storage shared"] + (["GPU matmul"] if smoke else [])  # fmt: skip
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True), problems


def _answers(nodes: list[dict[str, Any]], checks: list[NodeCheck], in_process: bool) -> list[dict[str, Any] | None]:
    """Each node's row (None: no answer in time): one Ray task pinned to each node, or this process."""
    if in_process:
        return [check_node(check, node["NodeID"]) for node, check in zip(nodes, checks)]
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task, refs = ray.remote(check_node), []
    for node, check in zip(nodes, checks):
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        refs.append(task.options(num_cpus=0, num_gpus=check.gpus, scheduling_strategy=strategy, max_retries=0)
                    .remote(check, node["NodeID"]))  # fmt: skip
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=ANSWER_TIMEOUT_S)
    return [ray.get(ref) if ref in ready else None for ref in refs]


def _missing_dirs(filesystem: Any, path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    from pyarrow import fs as pafs

    missing = []
    while path and path not in ("/", ".") and filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        missing.append(path)
        path = path.rstrip("/").rpartition("/")[0]
    return missing


def _remove_empty(filesystem: Any, folders: list[str]) -> None:
    """Delete the folders (deepest first) that are still empty."""
    from pyarrow import fs as pafs

    for folder in folders:
        try:
            if not filesystem.get_file_info(pafs.FileSelector(folder)):
                filesystem.delete_dir(folder)
        except OSError:
            return


def _read_back(filesystem: Any, folder: str, node_id: str, token: str) -> str:
    with filesystem.open_input_stream(f"{folder}/node-{node_id}") as f:
        return "ok" if f.read().decode() == token else "another token"


def _short(text: str) -> str:
    return "ok" if text.startswith("ok") else "NO"


def _table_row(name: str, node: dict[str, Any], row: dict[str, Any], fits: bool, smoke: bool) -> list[str]:
    cuda, have = row["cuda"], node["Resources"]
    faiss_gpus = row["faiss"].split("GPU build, ")[-1].split(" ")[0] if "GPU build" in row["faiss"] else "0"
    cells = [
        f"{name} ({row['host']})",
        f"{have.get('CPU', 0):g}/{have.get('GPU', 0):g}",
        "yes" if fits else "none fit",
        cuda["torch"],
        cuda["torch_cuda"],
        cuda["driver"],
        "ok" if cuda["cuda_available"] else "NO",
        f"{cuda['devices']}/{faiss_gpus}",
        row["faiss"].removeprefix("faiss ") if not row["faiss"].startswith("no") else "NO",
        row["data"].removeprefix("ok: ") if row["data"].startswith("ok") else "NO",
        _short(row["weights"]),
        _short(row["storage"]),
    ]
    return cells + ([row["smoke"] or "-"] if smoke else [])


def first_config(plan: Any) -> dict[str, Any]:
    """The configuration the nodes check: the first fixed one, or one sample of the searched space."""
    return dict(plan.configs[0]) if plan.configs else plan.space.sample(1, plan.settings.seed)[0]


def check_cluster(plan: Any, gpus: float, smoke: bool = False, say: Any = print) -> None:
    """Run the check for a sweep; print the table; raise :class:`ClusterError` listing the problems."""
    s, nodes = plan.settings, alive_nodes()
    local = s.address is None and len(nodes) == 1 and not any(n["Resources"].get("GPU", 0) for n in nodes)
    table, problems = run_check(first_config(plan), s.storage, s.cpus_per_trial, gpus, smoke, local and not smoke)
    where = "reachable from the driver (only the driver writes to it)"
    say(f"Cluster check ({len(alive_nodes())} node(s), {gpus:g} GPU per trial):\n{table}\n"
        f"MLflow {s.mlflow_uri}: {where if is_remote(s.mlflow_uri) else 'a local store on the driver'}")  # fmt: skip
    if problems:
        raise ClusterError(
            "the cluster cannot run this sweep:\n  " + "\n  ".join(problems)
            + "\n(python tune/run.py --space SPACE --check-cluster repeats this check; docs/gpu.md)"
        )
