"""Margin loss with a learnable per-class boundary beta (algorithms.md §1.2).

Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017, https://arxiv.org/abs/1706.07567;
reference code: Revisiting/DiVA ``criteria/margin.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dcml_core.registry import LOSSES

if TYPE_CHECKING:
    from dcml_core.config import LossConfig

IndicesTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MarginLoss(nn.Module):
    """Triplet margin loss ``relu(d_ap - beta_a + m) + relu(beta_a - d_an + m)`` with learnable beta.

    Faithful to the reference: ``beta`` holds one float32 value per TRAIN class, indexed by the anchor's
    label and cast to float32 after gathering; distances are ``sqrt(||x_a - x_b||^2 + 1e-8)``; the sum of
    hinge terms is divided by the number of triplets with ANY active term (logical OR, not the number of
    active pair terms as in pytorch-metric-learning), or not divided at all when that number is 0.

    Deviations (explicit):
        * No triplets: returns a zero scalar in the embeddings' dtype that is attached to the graph (so
          ``.backward()`` works and gives zero gradients); the reference returns a float32 ``tensor(0.)``
          without grad, on which ``.backward()`` fails.
        * ``nu > 0``: the reference raises ``NameError`` (bug R1). Here the beta regulariser of "Sampling
          Matters" is implemented: ``nu * sum_t beta[y_a_t]`` is added to the hinge sum before the
          division by the triplet count (``max(C, 1)``).
    """

    def __init__(
        self,
        n_classes: int,
        margin: float = 0.2,
        beta: float = 1.2,
        nu: float = 0.0,
        beta_constant: bool = False,
    ) -> None:
        super().__init__()
        if int(n_classes) != n_classes or n_classes < 1:
            raise ValueError(
                f"n_classes must be a positive integer (number of TRAIN classes), got {n_classes}"
            )
        if nu < 0:
            raise ValueError(f"nu (beta regulariser weight) must be >= 0, got {nu}")
        self.n_classes = int(n_classes)
        self.margin = float(margin)
        self.nu = float(nu)
        self.beta_constant = bool(beta_constant)
        init = torch.full((self.n_classes,), float(beta), dtype=torch.float32)  # (C,)
        if self.beta_constant:
            self.register_buffer("beta", init)
        else:
            self.beta = nn.Parameter(init)

    def param_groups(self, beta_lr: float) -> list[dict]:
        """Optimizer group for beta: its own lr and no weight decay (empty if beta is constant)."""
        if self.beta_constant:
            return []
        return [{"params": [self.beta], "lr": float(beta_lr), "weight_decay": 0.0}]

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: IndicesTuple
    ) -> torch.Tensor:
        """Loss over the mined triplets ``indices_tuple = (anchors, positives, negatives)``."""
        a, p, n = self._check_inputs(embeddings, labels, indices_tuple)
        beta = self.beta
        if a.numel() == 0:
            # Empty slices sum to an exact 0 that is still connected to embeddings (and beta).
            return embeddings[:0].sum() + beta[:0].sum().to(embeddings.dtype)
        anchors = embeddings[a]  # (T, D)
        d_ap = ((anchors - embeddings[p]).pow(2).sum(dim=1) + 1e-8).sqrt()  # (T,)
        d_an = ((anchors - embeddings[n]).pow(2).sum(dim=1) + 1e-8).sqrt()  # (T,)
        beta_a = beta[labels[a]].to(torch.float32)  # (T,) reference casts the gathered beta to float32
        pos_loss = torch.relu(d_ap - beta_a + self.margin)  # (T,)
        neg_loss = torch.relu(beta_a - d_an + self.margin)  # (T,)
        total = (pos_loss + neg_loss).sum()
        if self.nu > 0:
            total = total + self.nu * beta_a.to(total.dtype).sum()
        n_active = ((pos_loss > 0) | (neg_loss > 0)).sum()  # triplets with ANY active term
        return total / n_active.clamp(min=1).to(total.dtype)

    def _check_inputs(
        self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: IndicesTuple
    ) -> IndicesTuple:
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings must have shape (B, D), got {tuple(embeddings.shape)}")
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(
                f"labels must have shape ({embeddings.shape[0]},) to match embeddings, "
                f"got {tuple(labels.shape)}"
            )
        if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) != 3:
            raise ValueError(
                "indices_tuple must be (anchors, positives, negatives) index tensors from a miner"
            )
        a, p, n = (torch.as_tensor(t, device=embeddings.device) for t in indices_tuple)
        if not (a.dim() == p.dim() == n.dim() == 1 and a.shape == p.shape == n.shape):
            raise ValueError(
                f"anchor/positive/negative indices must be 1-D of equal length, got shapes "
                f"{tuple(a.shape)}, {tuple(p.shape)}, {tuple(n.shape)}"
            )
        if a.numel() == 0:
            return a.long(), p.long(), n.long()
        if a.is_floating_point() or p.is_floating_point() or n.is_floating_point():
            raise ValueError("triplet indices must be integer tensors (torch.long)")
        idx = torch.stack([a, p, n])
        if bool(idx.min() < 0) or bool(idx.max() >= embeddings.shape[0]):
            raise ValueError(f"triplet indices must lie in [0, {embeddings.shape[0]}) (the batch size)")
        anchor_labels = labels[a]
        if bool(anchor_labels.min() < 0) or bool(anchor_labels.max() >= self.n_classes):
            raise ValueError(
                f"anchor labels must lie in [0, n_classes={self.n_classes}); "
                "beta has one entry per TRAIN class"
            )
        return a.long(), p.long(), n.long()


@LOSSES.register("margin")
def margin_loss(cfg: LossConfig, n_classes: int) -> MarginLoss:
    """``loss.name = "margin"``: one beta per TRAIN class."""
    return MarginLoss(n_classes, margin=cfg.margin, beta=cfg.beta, nu=cfg.nu, beta_constant=cfg.beta_constant)
