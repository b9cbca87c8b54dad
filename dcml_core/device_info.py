"""What this process can compute on: torch's CUDA build and the driver's answer, and the faiss build.

Read by a sweep trial before it touches any data (a trial given a GPU share must have a usable GPU) and by the
cluster check on every node. Nothing here starts work on a GPU except :func:`cuda_smoke_test`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def driver_version() -> str:
    """The NVIDIA kernel driver's version line, or ``none`` when no NVIDIA driver is loaded."""
    try:
        first = _DRIVER_FILE.read_text().splitlines()[0]
    except (OSError, IndexError):
        return "none"
    words = first.split()
    return next((w for w in words if w[:1].isdigit() and "." in w), first.strip())


def cuda_status() -> dict[str, Any]:
    """torch's version and CUDA build, whether CUDA works here (and why not), the devices torch sees, the
    driver and ``CUDA_VISIBLE_DEVICES`` (what Ray set for this worker)."""
    available = torch.cuda.is_available()
    problem = ""
    if not available:
        try:
            torch.cuda.init()  # raises with the driver's reason (no driver, too old for this build, no device)
            problem = "torch.cuda.is_available() is False"
        except Exception as err:  # noqa: BLE001 - any reason is reported, none is acted on here
            problem = " ".join(str(err).split())
    count = torch.cuda.device_count() if available else 0
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda or "none (CPU-only build)",
        "cuda_available": available,
        "devices": count,
        "device_names": [torch.cuda.get_device_name(i) for i in range(count)],
        "driver": driver_version(),
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        "problem": problem,
    }


def describe_cuda(status: dict[str, Any]) -> str:
    """One line: torch build, driver, availability (with the reason) and ``CUDA_VISIBLE_DEVICES``."""
    seen = f"{status['devices']} device(s) {status['device_names']}" if status["cuda_available"] else "no device"
    why = f" ({status['problem']})" if status["problem"] else ""
    return (
        f"torch {status['torch']} built for CUDA {status['torch_cuda']}, NVIDIA driver {status['driver']}, "
        f"torch.cuda.is_available() = {status['cuda_available']}{why}, {seen}, "
        f"CUDA_VISIBLE_DEVICES={status['visible_devices']}"
    )


def faiss_build() -> dict[str, Any]:
    """The installed faiss: version, whether it is a GPU build, and how many GPUs it sees."""
    from dcml_core.evaluation.faiss_lib import faiss

    gpu = hasattr(faiss, "StandardGpuResources")
    return {"version": faiss.__version__, "gpu_build": gpu, "gpus": int(faiss.get_num_gpus()) if gpu else 0}


def describe_faiss(build: dict[str, Any]) -> str:
    """``faiss 1.15.1 (CPU build)`` or ``faiss 1.15.1 (GPU build, 1 GPU)``."""
    kind = f"GPU build, {build['gpus']} GPU" if build["gpu_build"] else "CPU build"
    return f"faiss {build['version']} ({kind})"


def cuda_smoke_test() -> str:
    """A matrix product on every visible CUDA device, checked against the CPU; ``ok`` or the error."""
    try:
        a = torch.randn(256, 256)
        for i in range(torch.cuda.device_count()):
            got = (a.to(f"cuda:{i}") @ a.to(f"cuda:{i}")).cpu()
            if not torch.allclose(got, a @ a, rtol=1e-3, atol=1e-2):
                return f"cuda:{i} computed a wrong matrix product"
        return "ok"
    except Exception as err:  # noqa: BLE001 - reported in the cluster table
        return f"{type(err).__name__}: {err}"
