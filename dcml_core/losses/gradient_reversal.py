"""Gradient reversal layer (GRL) used by DiVA's adversarial decorrelation (algorithms.md §2.2.5, §7 D3)."""

from __future__ import annotations

from typing import Any

import torch


class GradientReversal(torch.autograd.Function):
    """Identity in the forward pass, gradient multiplied by ``-scale`` in the backward pass.

    The reference ``GradRev`` is a legacy (non-static) ``autograd.Function`` that raises on PyTorch >= 1.5
    (bug D3); this is the static-method equivalent with the reference's scale of 1 as default.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad_output * (-ctx.scale), None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Apply gradient reversal: returns ``x`` unchanged, its gradient becomes ``-scale * grad``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"grad_reverse expects a torch.Tensor, got {type(x).__name__}")
    return GradientReversal.apply(x, float(scale))
