"""Mixed precision and determinism of a device: the autocast dtype, the gradient scaler, torch's
deterministic algorithms.

* AMP (``amp: true``) is used on CUDA only. ``amp_dtype: auto`` takes bfloat16 where the GPU computes it natively
  (compute capability 8.0 and newer), else float16; bfloat16 has float32's exponent range, so it needs no loss
  scaling and cannot overflow where float32 would not. Only float16 gets a :class:`torch.amp.GradScaler`.
* Evaluation embeddings are never computed under autocast (the reference protocol is float32).
* ``deterministic: true`` on CUDA switches on ``torch.use_deterministic_algorithms`` (with ``warn_only``: an
  operation without a deterministic CUDA kernel warns instead of ending the run) besides cuDNN's deterministic
  mode and cuBLAS's fixed workspace (:func:`dcml_core.seeding.seed_everything`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from dcml_core.config import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def bf16_native(device: torch.device) -> bool:
    """Whether the CUDA ``device`` computes bfloat16 natively (emulated bf16 on older GPUs is slow)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def amp_dtype(amp: bool, name: str, device: torch.device, bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of a run, or None (no autocast: AMP off, or not on CUDA).

    Args:
        amp: the configuration's ``amp``.
        name: ``auto``, ``bf16`` or ``fp16`` (``amp_dtype``).
        device: the run's device.
        bf16: whether the GPU computes bfloat16 natively; None asks torch (:func:`bf16_native`).
    """
    if name not in ("auto", *AMP_DTYPES):
        raise ConfigError(f"'amp_dtype' is {name!r}; expected one of 'auto', 'bf16', 'fp16'")
    if not amp or device.type != "cuda":
        return None
    native = bf16_native(device) if bf16 is None else bf16
    if name == "bf16" and not native:
        raise ConfigError(
            f"'amp_dtype' is 'bf16' but the GPU {device} has no native bfloat16 (it needs compute capability 8.0 "
            "or newer); use amp_dtype 'auto' or 'fp16'"
        )
    if name == "auto":
        return torch.bfloat16 if native else torch.float16
    return AMP_DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op for None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def make_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for float16 autocast (bfloat16 and float32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any]) -> None:
    """Restore a scaler. A checkpoint written without float16 AMP (on the CPU, or with bf16) holds an empty
    state: an enabled scaler then keeps its initial scale and calibrates itself in the first steps."""
    if state or not scaler.is_enabled():
        scaler.load_state_dict(state)


def set_deterministic(enabled: bool, cuda: bool) -> None:
    """Switch torch's deterministic algorithms on (CUDA runs with ``deterministic``) or off (the default)."""
    if cuda:
        torch.use_deterministic_algorithms(enabled, warn_only=True)
