"""BN-Inception (Inception v2; Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167).

Parameter names follow the state-dict layout of the `pretrainedmodels` package (PyPI 0.7.4, weight file
`bn_inception-52deb4733.pth`; GitHub master's `bn_inception-239d2248.pth` has the same keys). Every
conv-BN-ReLU unit is a flat pair `<name>` (Conv2d with bias) and `<name>_bn` (BatchNorm2d), e.g.
`inception_3a_double_3x3_1` / `inception_3a_double_3x3_1_bn`.

BatchNorm uses the torch defaults (eps 1e-5, momentum 0.1) as in PyPI 0.7.4, the release the reference
installs. GitHub master later set momentum=0.9 (Caffe convention; in torch it keeps only 10% of the old
running statistics per step). This matters only when BN is not frozen (`bninception_normalize`).

Input convention: BGR, 0-255 scale, mean-subtracted (done by the transforms). 224 or 227 crops give a 7x7 map,
which is pooled with an adaptive average pool, as DiVA does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024

# (block, in, 1x1, 3x3_reduce, 3x3, double_reduce, double, pool, pool_proj, stride)
#   stride 2 blocks are the grid reductions: no 1x1 / pool_proj branch, their max-pool output is concatenated.
_BLOCKS: tuple[tuple[str, int, int, int, int, int, int, str, int, int], ...] = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128, 1),
)

# forward plan of one block: (branches as tuples of unit names, pool module name, pool_proj unit name or None)
_Plan = tuple[tuple[tuple[str, ...], ...], str, str | None]


class BNInception(nn.Module):
    """BN-Inception with `pretrainedmodels` parameter names; `num_classes=None` drops `last_linear`."""

    def __init__(self, num_classes: int | None = 1000) -> None:
        super().__init__()
        self._add_unit("conv1_7x7_s2", 3, 64, kernel=7, stride=2)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._add_unit("conv2_3x3_reduce", 64, 64, kernel=1)
        self._add_unit("conv2_3x3", 64, 192, kernel=3)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._plan = [self._add_block(*spec) for spec in _BLOCKS]
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.last_linear = nn.Linear(FEATURE_DIM, num_classes) if num_classes else None

    def _add_unit(self, name: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> str:
        """Register the flat pair `<name>` (conv) and `<name>_bn`; returns `name`."""
        self.add_module(name, nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(c_out))
        return name

    def _add_block(
        self,
        tag: str,
        c_in: int,
        c1: int,
        c3r: int,
        c3: int,
        cdr: int,
        cd: int,
        pool: str,
        cp: int,
        stride: int,
    ) -> _Plan:
        """Register one inception block's units and pool; returns its forward plan."""
        p = f"inception_{tag}_"
        branches = [(self._add_unit(p + "1x1", c_in, c1, 1),)] if c1 else []
        reduce = self._add_unit(p + "3x3_reduce", c_in, c3r, 1)
        branches.append((reduce, self._add_unit(p + "3x3", c3r, c3, 3, stride)))
        double = self._add_unit(p + "double_3x3_reduce", c_in, cdr, 1)
        double_1 = self._add_unit(p + "double_3x3_1", cdr, cd, 3)
        branches.append((double, double_1, self._add_unit(p + "double_3x3_2", cd, cd, 3, stride)))
        if pool == "avg":
            pool_module: nn.Module = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True)
        else:
            pool_module = nn.MaxPool2d(3, stride=stride, padding=1 if stride == 1 else 0, ceil_mode=True)
        self.add_module(p + "pool", pool_module)
        proj = self._add_unit(p + "pool_proj", c_in, cp, 1) if cp else None
        return tuple(branches), p + "pool", proj

    def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Conv -> BN -> ReLU of the unit `name`."""
        return F.relu(self.get_submodule(f"{name}_bn")(self.get_submodule(name)(x)), inplace=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> feature map (B, 1024, H/32, W/32)."""
        x = self._unit("conv1_7x7_s2", x)
        x = self._unit("conv2_3x3", self._unit("conv2_3x3_reduce", self.pool1_3x3_s2(x)))
        x = self.pool2_3x3_s2(x)
        for branches, pool_name, proj in self._plan:
            outs = []
            for units in branches:
                y = x
                for name in units:
                    y = self._unit(name, y)
                outs.append(y)
            pooled = self.get_submodule(pool_name)(x)
            outs.append(self._unit(proj, pooled) if proj is not None else pooled)
            x = torch.cat(outs, dim=1)  # (B, C_out, h, w)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> pooled features (B, 1024), or logits (B, num_classes) if `last_linear` exists."""
        f = torch.flatten(self.global_pool(self.features(x)), 1)  # (B, 1024)
        return f if self.last_linear is None else self.last_linear(f)
