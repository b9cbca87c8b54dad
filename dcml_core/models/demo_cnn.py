"""A small GroupNorm ConvNet for the embedded demo (a demo choice, not part of any paper's recipe).

The real spaces use the papers' ImageNet-pretrained ResNet-50 with frozen BatchNorm statistics (algorithms.md
§1.1). The demo cannot: no ImageNet weights are available offline, and frozen BatchNorm statistics taken from a
random initialisation (mean 0, variance 1) normalise nothing, so the trunk is an unnormalised deep network.
Measured on the demo data: under the DiVA/DCML objective at lr 1e-3 its pooled features die (70% exact zeros)
or blow up (mean 4e5) within one epoch and every embedding collapses onto one point; the margin loss alone
learns, slowly. GroupNorm normalises each image on its own, so there are no batch statistics to freeze and the
MoCo key encoder (an EMA over parameters, not buffers) computes exactly what the query network computes.

Four stages of two 3x3 convolutions (GroupNorm, ReLU), 2x2 max-pooling between stages, global average
pooling: widths 16-32-64-128, about 13 M multiply-adds per 32 px image (ResNet-18 at 32 px: about 40 M).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
FEATURE_DIM = WIDTHS[-1]


def _block(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.GroupNorm(min(8, out_ch // 4), out_ch),
        nn.ReLU(inplace=True),
    ]


class MaxPool2x2(nn.MaxPool2d):
    """2x2 max-pooling with stride 2, as ``nn.MaxPool2d(2)``. Where no gradient is needed (evaluation, the MoCo
    key encoder) it takes the maximum of the four strided slices: the same values bit for bit, 8x faster on a CPU,
    whose ``max_pool2d`` kernel for this layout also computes the argmax indices (`benchmarks/bench_demo_pool.py`).
    Where a gradient is needed it is ``nn.MaxPool2d``: in a window of equal values its gradient goes to one element
    (``torch.maximum`` would split it), so training is unchanged."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # an odd last row or column is dropped, as by MaxPool2d
        top, bottom = x[..., 0:h:2, 0:w:2], x[..., 1:h:2, 0:w:2]
        return torch.maximum(torch.maximum(top, x[..., 0:h:2, 1:w:2]), torch.maximum(bottom, x[..., 1:h:2, 1:w:2]))


class DemoCNN(nn.Module):
    """Images (B, 3, H, W) -> pooled features (B, 128); any H, W >= 8."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for i, width in enumerate(widths):
            layers += _block(channels, width) + _block(width, width)
            if i < len(widths) - 1:
                layers.append(MaxPool2x2())
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)  # (B, C)
