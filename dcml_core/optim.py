"""Optimiser and learning-rate schedule (algorithms.md §1.5).

Adam with plain L2 weight decay on all network parameters (lr ``optim.lr``), plus one group per criterion
that has parameters (margin beta: lr 5e-4; decorrelation regressors: lr 1e-5; deep-clustering classifier:
10x lr), none of them with weight decay. MultiStepLR(tau, gamma) applies to every group.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dcml_core.config import OptimConfig, ScheduleConfig


def param_groups(cfg: OptimConfig, model: nn.Module, extra_groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the network's trainable parameters first (so ``param_groups[0]['lr']`` is
    the network learning rate), then the criteria's groups."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": params, "lr": cfg.lr, "weight_decay": cfg.weight_decay}, *extra_groups]


def state_per_parameter(cfg: OptimConfig) -> int:
    """Tensors of the parameter's size the optimiser keeps per parameter: Adam's two moments, SGD's momentum
    buffer (none without momentum)."""
    if cfg.optimizer == "adam":
        return 2
    return 1 if cfg.momentum else 0


def build_optimizer(cfg: OptimConfig, model: nn.Module, extra_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """Adam or SGD over :func:`param_groups`."""
    groups = param_groups(cfg, model, extra_groups)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=cfg.momentum)


def build_scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
    """``tau`` are the epochs at which every group's learning rate is multiplied by ``gamma``."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.tau), gamma=cfg.gamma)
