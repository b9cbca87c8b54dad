"""DaNCE: distance-adapted noise-contrastive estimation over a MoCo key queue (algorithms.md §2.2.2).

Milbich, Roth et al., "DiVA: Diverse Visual Feature Aggregation for Deep Metric Learning", ECCV 2020,
https://arxiv.org/abs/2004.13458; reference code: DiVA ``criteria/fast_moco.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcml_core.miners.distance_weighted import inverse_sphere_log_weights


class DanceLoss(nn.Module):
    """InfoNCE whose negative logits ``<q, Q_j>`` are multiplied by inverse-density distance weights.

    ``fixed=False`` (default, the code used for the DiVA paper and the only version in the DCML repo):
    log weights are max-subtracted over the WHOLE (B, N) matrix and the weights normalised over the batch
    (columns), bug D1. ``fixed=True`` is DiVA's later ``--diva_fixed``: per-row max and row normalisation.
    In both, weights of pairs farther than ``upper_cutoff`` are zeroed and then floored at 1e-45.

    The queue is not owned here: the momentum-encoder module keeps it and passes it to ``forward``.
    ``k`` and ``queue`` are expected without gradient (key network under ``no_grad``); only the distance
    weights are detached explicitly, as in the reference.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        lower_cutoff: float = 0.5,
        upper_cutoff: float = 1.4,
        fixed: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if lower_cutoff <= 0 or upper_cutoff <= lower_cutoff:
            raise ValueError(f"need 0 < lower_cutoff < upper_cutoff, got {lower_cutoff}, {upper_cutoff}")
        self.temperature = float(temperature)
        self.lower_cutoff = float(lower_cutoff)
        self.upper_cutoff = float(upper_cutoff)
        self.fixed = bool(fixed)

    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``[<q,k>, w * <q,Q>] / tau`` against target 0, averaged over the batch."""
        self._check_inputs(q, k, queue)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        l_neg = q @ queue.t()  # (B, N)
        weights = self.negative_weights(q.detach(), queue.detach())  # (B, N)
        logits = torch.cat([l_pos, l_neg * weights], dim=1) / self.temperature  # (B, 1 + N)
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # (B,)
        return F.cross_entropy(logits, target)

    @torch.no_grad()
    def negative_weights(self, q: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """Distance weights ``(B, N)`` multiplying the negative logits (see class docstring)."""
        # Self-similarities are cosine (= 1), so d^2 = 2 - 2<q, Q> whatever the norms, as in the reference.
        dist = (2.0 - 2.0 * (q @ queue.t())).clamp(min=0).sqrt().clamp(min=self.lower_cutoff)  # (B, N)
        log_w = inverse_sphere_log_weights(dist, q.shape[1])  # (B, N)
        if self.fixed:
            w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values)
        else:
            w = torch.exp(log_w - log_w.max())
        w = w.masked_fill(dist > self.upper_cutoff, 0.0).clamp(min=1e-45)
        return w / w.sum(dim=1 if self.fixed else 0, keepdim=True)

    @staticmethod
    def _check_inputs(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> None:
        if q.dim() != 2 or k.shape != q.shape:
            raise ValueError(f"q and k must both be (B, D), got {tuple(q.shape)} and {tuple(k.shape)}")
        if queue.dim() != 2 or queue.shape[1] != q.shape[1] or queue.shape[0] == 0:
            raise ValueError(
                f"queue must be a non-empty (N, D={q.shape[1]}) tensor of past keys, got {tuple(queue.shape)}"
            )
