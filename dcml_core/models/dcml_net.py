"""DCML network (Zheng et al., CVPR 2021): K sub-embeddings, M compositors, heads of composites (§3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dcml_core.head_names import DIVA_HEADS
from dcml_core.models.embedding_net import ModelOutput, check_features, check_positive

EVAL_ON: tuple[str, ...] = ("composites", "subembeddings")


def composites_per_head(compos_num: int, features: Sequence[str], label: str | None = None) -> int:
    """Composites each DCML head concatenates, M // len(features); M must be a multiple of the heads (§3.1).

    ``label`` names the offending setting in the error (default ``compos_num=<M>``).
    """
    n_heads = len(features)
    if compos_num % n_heads:
        raise ValueError(
            f"{label or f'compos_num={compos_num}'} must be a multiple of the number of heads ({n_heads}: "
            f"{list(features)}, len(features)={n_heads}); allowed values: "
            f"{[n_heads * i for i in range(1, 5)]}, ...: each head concatenates compos_num // len(features) composites"
        )
    return compos_num // n_heads


def check_dcml_args(
    embed_dim: int, ensemble_num: int, compos_num: int, features: Sequence[str], eval_on: str
) -> tuple[str, ...]:
    """Validate the DCML settings; returns the head names."""
    check_positive(embed_dim=embed_dim, ensemble_num=ensemble_num, compos_num=compos_num)
    names = check_features(features)
    composites_per_head(compos_num, names)
    if eval_on not in EVAL_ON:
        raise ValueError(f"eval_on must be one of {EVAL_ON}, got {eval_on!r}")
    return names


class DCMLNet(nn.Module):
    """Deep Compositional Metric Learning network, as the authors' compiled module computes it (§3.1 [PYC]).

    z_k = W_k f + b_k (K sub-embeddings of size D, Z = [z_1..z_K] not normalised);
    p_m = softmax(C_m(stopgrad(Z))) (M compositors, Linear(K*D -> K)); c_m = sum_k p_m[:, k] z_k;
    with n = M // len(features): head_j = n(concat(c_{jn+1}, ..., c_{(j+1)n})).
    The K sub-embedding layers are stored fused as `ensemble` = Linear(F, K*D) (rows k*D..(k+1)*D-1 are W_k),
    the compositors as `compositors` = Linear(K*D, M*K) (rows m*K..(m+1)*K-1 are C_m); their initial
    distributions equal those of the reference's separate Linear layers. The ImageNet classifier, which the
    reference keeps but never uses, is not kept.
    `eval_on="subembeddings"` (§3.6 [RECON], not in the released code) evaluates n(Z) instead of the heads.
    """

    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        embed_dim: int,
        ensemble_num: int = 4,
        compos_num: int = 4,
        features: Sequence[str] = DIVA_HEADS,
        normalize: bool = True,
        eval_on: str = "composites",
    ) -> None:
        super().__init__()
        check_positive(feature_dim=feature_dim)
        self.feature_names = check_dcml_args(embed_dim, ensemble_num, compos_num, features, eval_on)
        self.trunk = trunk
        self.feature_dim, self.embed_dim = feature_dim, embed_dim
        self.ensemble_num, self.compos_num = ensemble_num, compos_num
        self.normalize, self.eval_on = normalize, eval_on
        self.ensemble = nn.Linear(feature_dim, ensemble_num * embed_dim)
        self.compositors = nn.Linear(ensemble_num * embed_dim, compos_num * ensemble_num)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Images -> (heads {name: (B, n*D)}, f (B, F), aux).

        aux: {"compositor_logits": (M, B, K) before the softmax, "subembeddings": Z (B, K*D), not normalised}.
        """
        f = self.trunk(x)  # (B, F)
        b, k, d, m = f.shape[0], self.ensemble_num, self.embed_dim, self.compos_num
        z = self.ensemble(f)  # (B, K*D)
        logits = self.compositors(z.detach()).reshape(b, m, k)  # (B, M, K); stop-gradient into Z
        p = logits.softmax(dim=-1)  # (B, M, K)
        composites = torch.einsum("bmk,bkd->bmd", p, z.reshape(b, k, d))  # (B, M, D)
        per_head = composites.reshape(b, len(self.feature_names), -1)  # (B, H, n*D): consecutive composites
        heads = {name: self._norm(per_head[:, j]) for j, name in enumerate(self.feature_names)}
        aux = {"compositor_logits": logits.transpose(0, 1).contiguous(), "subembeddings": z}
        return heads, f, aux

    def embed_for_eval(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Test-time embeddings: the heads (§3.5), or {"subembeddings": n(Z)} with eval_on="subembeddings"."""
        heads, _, aux = self.forward(x)
        if self.eval_on == "subembeddings":
            return {"subembeddings": self._norm(aux["subembeddings"])}
        return heads
