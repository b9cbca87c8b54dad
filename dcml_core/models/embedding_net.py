"""Multi-head embedding network: DiVA (§2.1); with one `discriminative` head the Revisiting network (§1.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# every model returns (heads: name -> (B, D_head), pooled features f (B, F), auxiliary tensors)
ModelOutput = tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]


def check_features(features: Sequence[str]) -> tuple[str, ...]:
    """Validate head names (non-empty, unique strings) and return them as a tuple."""
    if isinstance(features, str):
        raise ValueError(f"features must be a sequence of head names, got the string {features!r}")
    names = tuple(features)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"features must be non-empty, unique head names, got {list(names)}")
    return names


def check_positive(**values: int) -> None:
    """Raise ValueError naming every argument that is not a positive int."""
    bad = [f"{k}={v!r}" for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
    if bad:
        raise ValueError(f"expected positive integers, got {', '.join(bad)}")


class EmbeddingNet(nn.Module):
    """Trunk + one Linear(F, D) head per feature name; heads are L2-normalised when `normalize` is set.

    DiVA: https://arxiv.org/abs/2004.13458; with features=("discriminative",) it is the network of
    "Revisiting Training Strategies and Generalization Performance in DML" (https://arxiv.org/abs/2002.08473).
    """

    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        features: Sequence[str],
        embed_dim: int,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        check_positive(feature_dim=feature_dim, embed_dim=embed_dim)
        self.feature_names = check_features(features)
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.normalize = normalize
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, embed_dim) for name in self.feature_names})

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Images -> ({name: n(Linear_name(f))} each (B, D), f (B, F), {})."""
        f = self.trunk(x)  # (B, F)
        heads = {}
        for name, linear in self.heads.items():
            h = linear(f)  # (B, D)
            heads[name] = F.normalize(h, dim=-1) if self.normalize else h
        return heads, f, {}

    def embed_for_eval(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Test-time embeddings: the heads (§2.5 combines them later)."""
        return self.forward(x)[0]
