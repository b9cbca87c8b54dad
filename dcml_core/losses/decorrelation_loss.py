"""DiVA adversarial decorrelation ``L_sep`` between embedding heads (algorithms.md §2.2.5).

Milbich, Roth et al., "DiVA", ECCV 2020, https://arxiv.org/abs/2004.13458; reference code: DiVA
``criteria/adversarial_separation.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dcml_core.losses.gradient_reversal import grad_reverse


def _split_direction(direction: str) -> tuple[str, str]:
    parts = direction.split("-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"direction must be 'source-target' (e.g. 'selfsimilarity-discriminative'), got {direction!r}"
        )
    return parts[0], parts[1]


class DecorrelationLoss(nn.Module):
    """``L_sep = sum_dirs -rho * mean_b mean_j (t_hat_bj * n(R_{s-t}(s_hat_b))_j)^2`` with reversed gradients.

    ``s_hat = n(GRL(h_s))``, ``t_hat = n(GRL(h_t))``. Each direction ``"s-t"`` has its own regressor
    ``Linear(D, hidden) - ReLU - Linear(hidden, D)`` in ``self.regressors[direction]``. The regressors descend
    the loss (maximise the squared correlation); through the gradient reversal the heads minimise it.

    Weights pair with directions via ``zip(rho, directions)`` like the reference, so a single rho uses
    only the FIRST direction (bug D5; a warning is issued). ``rho_broadcast=True`` (explicit
    non-reference option) applies a single rho value to every direction instead.
    """

    def __init__(
        self,
        embed_dim: int,
        directions: Sequence[str],
        rho: Sequence[float],
        hidden_dim: int = 512,
        rho_broadcast: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(directions, str) or isinstance(rho, (int, float)):
            raise TypeError(
                "directions and rho must be sequences, e.g. ['selfsimilarity-discriminative'], [1500]"
            )
        if len(directions) == 0 or len(rho) == 0:
            raise ValueError("need at least one direction and one rho value")
        if embed_dim < 1 or hidden_dim < 1:
            raise ValueError(f"embed_dim and hidden_dim must be positive, got {embed_dim}, {hidden_dim}")
        self.pairs = [_split_direction(d) for d in directions]
        self.directions = list(directions)
        if rho_broadcast and len(rho) == 1:
            rho = list(rho) * len(self.directions)
        elif len(rho) < len(self.directions):
            warnings.warn(
                f"{len(rho)} rho value(s) for {len(self.directions)} directions: as in the reference "
                f"(zip), only the first {len(rho)} direction(s) are used. Pass one rho per direction "
                "or rho_broadcast=True.",
                stacklevel=2,
            )
        self.rho = [float(r) for r in rho]
        self.regressors = nn.ModuleDict(
            {
                d: nn.Sequential(
                    nn.Linear(embed_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embed_dim)
                )
                for d in self.directions
            }
        )

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer group for the regressors: own lr, no weight decay."""
        return [{"params": list(self.regressors.parameters()), "lr": float(lr), "weight_decay": 0.0}]

    def forward(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decorrelation loss over the heads named in the used directions (each ``(B, D)``)."""
        used = list(zip(self.rho, self.directions, self.pairs))
        needed = {name for _, _, pair in used for name in pair}
        missing = sorted(needed - set(heads))
        if missing:
            raise KeyError(
                f"heads {missing} are required by directions {self.directions}; got {sorted(heads)}"
            )
        reversed_heads = {name: F.normalize(grad_reverse(heads[name]), dim=-1) for name in sorted(needed)}
        loss = 0.0
        for weight, direction, (source, target) in used:
            projected = F.normalize(self.regressors[direction](reversed_heads[source]), dim=-1)  # (B, D)
            correlation = (reversed_heads[target] * projected) ** 2  # (B, D)
            loss = loss - weight * correlation.mean(dim=-1).mean()
        return loss
