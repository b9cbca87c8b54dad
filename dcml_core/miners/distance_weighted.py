"""Distance-weighted negative mining (algorithms.md §1.3; DiVA ``batchminer/distance.py``).

Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017, https://arxiv.org/abs/1706.07567.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dcml_core.registry import MINERS

if TYPE_CHECKING:
    from dcml_core.config import MinerConfig

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix computed as the reference's ``pdist`` (via the Gram matrix, clamped at 0)."""
    prod = x @ x.t()  # (B, B)
    norm = prod.diag().unsqueeze(1).expand_as(prod)  # (B, B)
    return (norm + norm.t() - 2 * prod).clamp(min=0).sqrt()


def inverse_sphere_log_weights(dist: torch.Tensor, dim: int) -> torch.Tensor:
    """``log q(d)^-1 = (2 - n) log d - (n - 3)/2 log(1 - d^2/4)`` for points on the unit sphere in R^n.

    The weight has a pole at d = 2 where the reference produces inf/NaN. The argument of the second log is
    clamped to the dtype's smallest normal number, which only changes entries for which ``1 - d^2/4 <= 0``
    (i.e. where the reference is not finite); every finite reference value is reproduced exactly.
    """
    one_minus = (1.0 - 0.25 * dist.pow(2)).clamp(min=torch.finfo(dist.dtype).tiny)
    return (2.0 - float(dim)) * torch.log(dist) - (float(dim - 3) / 2) * torch.log(one_minus)


def negative_distribution(
    embeddings: torch.Tensor, labels: torch.Tensor, lower_cutoff: float, upper_cutoff: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row negative sampling probabilities ``(B, B)`` and a mask of rows that have any negative.

    Row i is ``w_ij / sum_j w_ij`` over samples j of another class, with ``w`` the inverse sphere density of
    the distances clamped below at ``lower_cutoff`` (max-subtracted per row like the reference, same-class
    log weights set to 0 before the max). ``upper_cutoff`` (not applied by the reference) zeroes ``d >
    upper_cutoff``. A row whose weights are all 0 (only possible with ``upper_cutoff`` or non-finite
    input) falls back to uniform over its negatives. Rows without any negative are all zero.
    """
    dist = pairwise_distances(embeddings).clamp(min=lower_cutoff)  # (B, B)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B), includes the diagonal
    log_w = inverse_sphere_log_weights(dist, embeddings.shape[1]).masked_fill(same, 0.0)  # (B, B)
    w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values).masked_fill(same, 0.0)  # (B, B)
    if upper_cutoff is not None:
        w = w.masked_fill(dist > upper_cutoff, 0.0)
    negatives = ~same  # (B, B)
    has_negative = negatives.any(dim=1)  # (B,)
    row_sum = w.sum(dim=1, keepdim=True)  # (B, 1)
    degenerate = ~(row_sum > 0)  # (B, 1) zero or NaN
    uniform = negatives.to(w.dtype) / negatives.sum(dim=1, keepdim=True).clamp(min=1).to(w.dtype)  # (B, B)
    probs = torch.where(degenerate, uniform, w / row_sum.masked_fill(degenerate, 1.0))  # (B, B)
    return probs.masked_fill(~has_negative.unsqueeze(1), 0.0), has_negative


def sample_rows(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one column index per row of a non-negative ``(R, B)`` weight matrix (``(R,)`` long)."""
    if weights.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=weights.device)
    if weights.dtype not in (torch.float32, torch.float64):
        weights = weights.float()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def check_miner_inputs(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``embeddings`` is ``(B, D)`` floating and ``labels`` is ``(B,)``."""
    if embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be a floating (B, D) tensor, got {tuple(embeddings.shape)}")
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")


class DistanceWeightedMiner:
    """DiVA distance-weighted miner: one triplet per anchor, negative ~ inverse sphere density.

    An anchor is every sample whose class has another member in the batch (and, as a guard the reference
    lacks, at least one other-class sample: the reference crashes without one). The positive is uniform
    over the other members of its class; the negative is drawn from :func:`negative_distribution`.
    Triplets come in ascending anchor order. Sampling uses torch's RNG (``generator`` or the global one),
    not numpy's global RNG as the reference, so individual draws differ; the distribution is identical.

    ``apply_upper_cutoff=True`` is an explicit non-reference option (the reference's line is commented out).
    """

    def __init__(
        self, lower_cutoff: float = 0.5, upper_cutoff: float = 1.4, apply_upper_cutoff: bool = False
    ):
        if lower_cutoff <= 0:
            raise ValueError(f"lower_cutoff must be > 0 (log of distance), got {lower_cutoff}")
        if upper_cutoff <= lower_cutoff:
            raise ValueError(f"upper_cutoff ({upper_cutoff}) must exceed lower_cutoff ({lower_cutoff})")
        self.lower_cutoff = float(lower_cutoff)
        self.upper_cutoff = float(upper_cutoff)
        self.apply_upper_cutoff = bool(apply_upper_cutoff)

    @torch.no_grad()
    def positive_candidates(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, B)`` bool: the other samples of each sample's class (all False for singletons)."""
        same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
        return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)

    @torch.no_grad()
    def negative_probabilities(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative probabilities ``(B, B)`` (input dtype; non-anchor rows 0) and anchor mask ``(B,)``."""
        check_miner_inputs(embeddings, labels)
        upper = self.upper_cutoff if self.apply_upper_cutoff else None
        probs, has_negative = negative_distribution(embeddings.detach(), labels, self.lower_cutoff, upper)
        anchor_mask = self.positive_candidates(labels).any(dim=1) & has_negative  # (B,)
        return probs.masked_fill(~anchor_mask.unsqueeze(1), 0.0), anchor_mask

    @torch.no_grad()
    def __call__(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> Triplets:
        """Mine ``(anchors, positives, negatives)`` as 1-D long tensors on the embeddings' device."""
        probs, anchor_mask = self.negative_probabilities(embeddings, labels)
        anchors = anchor_mask.nonzero().squeeze(1)  # (T,)
        pos_mask = self.positive_candidates(labels)[anchors]  # (T, B)
        positives = sample_rows(pos_mask.double(), generator)  # (T,)
        negatives = sample_rows(probs[anchors], generator)  # (T,)
        return anchors, positives, negatives


@MINERS.register("distance")
def distance_miner(cfg: MinerConfig) -> DistanceWeightedMiner:
    """``miner.name = "distance"`` (reference ``--batch_mining distance``)."""
    return DistanceWeightedMiner(cfg.lower_cutoff, cfg.upper_cutoff, cfg.apply_upper_cutoff)
