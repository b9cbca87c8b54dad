"""DCML self-reinforced loss J_reinf on the compositor outputs (algorithms.md §3.1, §3.2).

Zheng, Wang, Lu, Zhou, "Deep Compositional Metric Learning", CVPR 2021; reference: the committed
``architectures/__pycache__/multifeature_resnet50.cpython-37.pyc`` of wzzheng/DCML.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def self_reinforced_loss(logits: torch.Tensor, reference_nan: bool = False) -> torch.Tensor:
    """``J_reinf = sum_m mean_b -log p_m[b, argmax_k p_m[b, k]]`` for compositor logits ``(M, B, K)``.

    Cross-entropy of every compositor against its own argmax, pushing it towards a one-hot choice of one
    sub-embedding. The default uses ``log_softmax`` + gather and is always finite. ``reference_nan=True``
    mirrors the reference's ``-log(softmax(logits)) * one_hot`` product, which is NaN as soon as a non-argmax
    probability underflows to 0 (``inf * 0``; golden case 5 "numerical hazard").
    """
    if logits.dim() != 3 or logits.shape[-1] < 1 or logits.shape[1] < 1:
        raise ValueError(
            f"logits must have shape (M compositors, B, K sub-embeddings), got {tuple(logits.shape)}"
        )
    if reference_nan:
        probs = torch.softmax(logits, dim=-1)  # (M, B, K)
        one_hot = F.one_hot(probs.argmax(dim=-1), logits.shape[-1]).to(probs.dtype)  # (M, B, K)
        return (-torch.log(probs) * one_hot).sum(dim=-1).mean(dim=-1).sum()
    log_probs = F.log_softmax(logits, dim=-1)  # (M, B, K)
    chosen = log_probs.gather(-1, log_probs.argmax(dim=-1, keepdim=True)).squeeze(-1)  # (M, B)
    return (-chosen).mean(dim=-1).sum()
