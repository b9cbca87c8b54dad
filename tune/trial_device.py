"""The device of a trial, decided from the resources Ray gave it, before it reads any data: never a silent CPU
trial on a GPU share, never a second GPU that one process would leave idle."""

from __future__ import annotations

from typing import Any

from dcml_core.device_info import cuda_status, describe_cuda

# A trial that shares its GPU retries an out-of-memory error this often, this far apart (dcml_core.oom).
SHARED_GPU_OOM_RETRIES = 3
SHARED_GPU_OOM_WAIT_S = 30.0


class NoUsableGpuError(RuntimeError):
    """A trial holds a GPU share that it cannot use; the message says why and what to change."""


def whole_gpus_refused(gpus: float) -> str | None:
    """Why ``gpus`` per trial cannot be used (one trial process trains on one device), or None."""
    if gpus > 1:
        return (
            f"--gpus-per-trial {gpus:g}: a trial is one process that trains on one GPU, the other "
            f"{gpus - 1:g} would idle; use --gpus-per-trial 1 (or a fraction to pack trials on a GPU)"
        )
    return None


def trial_device(gpus: float, status: dict[str, Any] | None = None) -> str:
    """``cuda`` for a trial with a GPU share and a usable CUDA device, ``cpu`` for a trial without one.

    Raises :class:`NoUsableGpuError` naming torch's CUDA build, the driver, ``torch.cuda.is_available()`` with
    its reason and ``CUDA_VISIBLE_DEVICES`` when the trial holds a GPU share that CUDA cannot use, and for more
    than one whole GPU. ``status``: :func:`dcml_core.device_info.cuda_status` (read here when None).
    """
    if gpus <= 0:
        return "cpu"
    refused = whole_gpus_refused(gpus)
    if refused:
        raise NoUsableGpuError(refused)
    status = status or cuda_status()
    if not status["cuda_available"] or status["devices"] < 1:
        raise NoUsableGpuError(
            f"this trial holds {gpus:g} GPU (--gpus-per-trial {gpus:g}) but CUDA is not usable here: "
            f"{describe_cuda(status)}. Install a torch build that the node's NVIDIA driver supports (the driver "
            "must be at least as new as the CUDA version torch was built for), check that Ray's --num-gpus "
            "matches real GPUs, or run CPU trials with --gpus-per-trial 0"
        )
    return "cuda"


def oom_retries(gpus: float) -> tuple[int, float]:
    """(retries, wait in s) after an out-of-memory error: some for a shared GPU (a neighbour may have caused
    it), none for a whole GPU or the CPU (it would only repeat)."""
    return (SHARED_GPU_OOM_RETRIES, SHARED_GPU_OOM_WAIT_S) if 0 < gpus < 1 else (0, 0.0)
