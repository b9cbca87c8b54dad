"""Backbone trunks (ResNet-50/18, BN-Inception; the demo's small ConvNet): images -> pooled features, optional
frozen BN (§1.1)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from dcml_core.models.bninception import FEATURE_DIM as BNINCEPTION_DIM
from dcml_core.models.bninception import BNInception
from dcml_core.models.demo_cnn import FEATURE_DIM as DEMO_CNN_DIM
from dcml_core.models.demo_cnn import DemoCNN

BACKBONES: tuple[str, ...] = ("resnet50", "resnet18", "bninception", "demo_cnn")
_FEATURE_DIMS = {"resnet50": 2048, "resnet18": 512, "bninception": BNINCEPTION_DIM, "demo_cnn": DEMO_CNN_DIM}
NO_BATCHNORM: tuple[str, ...] = ("demo_cnn",)  # GroupNorm: no statistics to freeze, so no `_frozen` names
# ImageNet weight files looked up in `torch.hub.get_dir()/checkpoints` (torchvision V1, never V2; §1.1, §7).
# BN-Inception: the `pretrainedmodels` files (PyPI 0.7.4 first, then GitHub master), same key layout.
_BNINCEPTION_URLS = (
    "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
    "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-239d2248.pth",
)
_IMAGENET_WEIGHTS = ("resnet50", "resnet18", "bninception")  # backbones with ImageNet weight files


def _imagenet_urls(name: str) -> tuple[str, ...]:
    """Where the ImageNet weights of a backbone come from (torchvision imported only here and for its ResNets:
    a sweep's driver, which checks configurations, starts faster without it)."""
    if name == "bninception":
        return _BNINCEPTION_URLS
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    return ((ResNet50_Weights if name == "resnet50" else ResNet18_Weights).IMAGENET1K_V1.url,)
_CLASSIFIER_PREFIXES = ("fc.", "last_linear.")  # ImageNet classifiers: not part of a trunk
_LAYOUTS = {
    "resnet50": "torchvision or pretrainedmodels",
    "resnet18": "torchvision",
    "bninception": "pretrainedmodels",
    "demo_cnn": "dcml_core.models.demo_cnn.DemoCNN",
}


@dataclass(frozen=True)
class ArchSpec:
    """Parsed reference `--arch` name: backbone, frozen BN, L2-normalised embeddings."""

    backbone: str
    frozen_bn: bool
    normalize: bool


def _arch_names() -> dict[str, ArchSpec]:
    """All accepted `--arch` names: `<backbone>[_frozen][_normalize]`, matched exactly."""
    names = {}
    for backbone in BACKBONES:
        for frozen in (False, True) if backbone not in NO_BATCHNORM else (False,):
            for normalize in (False, True):
                name = backbone + ("_frozen" if frozen else "") + ("_normalize" if normalize else "")
                names[name] = ArchSpec(backbone, frozen, normalize)
    return names


ARCHS: dict[str, ArchSpec] = _arch_names()


def parse_arch(arch: str) -> ArchSpec:
    """Parse a reference architecture name such as `resnet50_frozen_normalize` (exact match only)."""
    if arch in ARCHS:
        return ARCHS[arch]
    close = difflib.get_close_matches(arch, list(ARCHS), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown arch {arch!r}.{hint} Valid names: {', '.join(ARCHS)}.")


class Trunk(nn.Module):
    """Images (B, 3, H, W) -> pooled features f (B, F); with `frozen_bn` every BatchNorm2d stays in eval mode.

    Frozen BN (§1.1) freezes only the running statistics (no batch statistics, no updates); the affine
    parameters keep `requires_grad=True` and are trained.
    """

    def __init__(self, body: nn.Module, feature_dim: int, frozen_bn: bool) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.frozen_bn = frozen_bn
        self.train(self.training)

    def train(self, mode: bool = True) -> Trunk:
        """Set the training mode; BatchNorm2d modules are put back into eval mode when BN is frozen."""
        super().train(mode)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features: (B, 3, H, W) -> (B, F)."""
        return self.body(x)


def _build_body(name: str) -> nn.Module:
    """Randomly initialised trunk body whose forward returns pooled features."""
    if name == "bninception":
        return BNInception(num_classes=None)
    if name == "demo_cnn":
        return DemoCNN()
    from torchvision.models import resnet18, resnet50

    body = resnet50() if name == "resnet50" else resnet18()
    body.fc = nn.Identity()  # torchvision's forward: flatten(avgpool(x), 1) -> fc
    return body


def _check_backbone(name: str) -> None:
    """Raise ValueError for an unknown backbone name, with a suggestion."""
    if name not in _FEATURE_DIMS:
        close = difflib.get_close_matches(name, BACKBONES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}.{hint} Valid names: {', '.join(BACKBONES)}.")


def resolve_weights(name: str, pretrained: str | None) -> Path | None:
    """Weight file for `pretrained` (None/"none" -> None); FileNotFoundError before any model is built."""
    _check_backbone(name)
    if pretrained is None or pretrained.lower() == "none":
        return None
    if pretrained.lower() == "imagenet":
        if name not in _IMAGENET_WEIGHTS:
            raise FileNotFoundError(
                f"there are no ImageNet weights for {name!r} (the demo's small ConvNet trains from random "
                "initialisation): use pretrained 'none', or a ResNet/BN-Inception arch for ImageNet weights."
            )
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        files = [os.path.basename(urlparse(url).path) for url in _imagenet_urls(name)]
        for file in files:
            if (cache / file).is_file():
                return cache / file
        also = f" (or {', '.join(files[1:])})" if len(files) > 1 else ""
        raise FileNotFoundError(
            f"ImageNet weights for {name} not found: expected the file {files[0]!r}{also} in {cache}; "
            f"download {_imagenet_urls(name)[0]} there yourself (this code never downloads), "
            f"or pass --pretrained_weights PATH to a local state-dict file."
        )
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {str(path)!r} does not exist; pass --pretrained_weights PATH to an "
            f"existing state-dict file, 'imagenet' (looked up in the torch hub cache "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}) or 'none'."
        )
    return path


def _trunk_state_dict(raw: object, path: Path) -> dict[str, torch.Tensor]:
    """Trunk keys of a loaded file: strip `module.`, drop the classifier (`fc.*` torchvision, `last_linear.*`
    pretrainedmodels; otherwise the pretrainedmodels ResNet layout equals torchvision's)."""
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors).")
    state = {str(k): v for k, v in raw.items()}
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}


def load_trunk_weights(body: nn.Module, name: str, path: Path) -> None:
    """Load a torchvision / `pretrainedmodels` state dict into a trunk body; missing or foreign keys raise."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types
        raise ValueError(f"cannot read {path} as a weights-only state dict: {err}") from err
    state = _trunk_state_dict(raw, path)
    expected = body.state_dict()
    # old files (e.g. pretrainedmodels) have no BN `num_batches_tracked`; torch then keeps the initial 0
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not match the {name} trunk: {len(missing)} missing keys {missing[:8]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}, {len(wrong)} shape mismatches {wrong[:4]}. "
            f"Expected a {_LAYOUTS[name]} {name} state dict."
        )
    body.load_state_dict(state, strict=False)


def build_backbone(name: str, pretrained: str | None, frozen_bn: bool) -> tuple[Trunk, int]:
    """Build a trunk by name with weights None/"none" (random), "imagenet" (local hub cache) or a file path.

    Returns the trunk module and its feature dimension F (2048 / 512 / 1024). Nothing is ever downloaded.
    """
    path = resolve_weights(name, pretrained)
    body = _build_body(name)
    if path is not None:
        load_trunk_weights(body, name, path)
    feature_dim = _FEATURE_DIMS[name]
    return Trunk(body, feature_dim, frozen_bn), feature_dim
