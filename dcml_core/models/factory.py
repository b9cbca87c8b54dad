"""Build the margin (Revisiting), DiVA and DCML networks from reference names."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dcml_core.head_names import DISCRIMINATIVE
from dcml_core.models.backbones import build_backbone, parse_arch
from dcml_core.models.dcml_net import DCMLNet, check_dcml_args
from dcml_core.models.embedding_net import EmbeddingNet, check_features, check_positive

METHODS: tuple[str, ...] = ("margin", "diva", "dcml")
MARGIN_FEATURES: tuple[str, ...] = (DISCRIMINATIVE,)


def input_convention(arch: str) -> str:
    """Image convention for the transforms: "bninception" (BGR, 0-255 scale) or "rgb" (ImageNet mean/std)."""
    return "bninception" if parse_arch(arch).backbone == "bninception" else "rgb"


def build_model(
    *,
    method: str,
    arch: str,
    embed_dim: int,
    features: Sequence[str],
    pretrained: str | None,
    ensemble_num: int = 4,
    compos_num: int = 4,
    eval_on: str = "composites",
) -> nn.Module:
    """Build a network returning `(heads, f, aux)`; all arguments are checked before the backbone is built.

    method "margin" is the Revisiting network with the single head ("discriminative",); "diva" one head per
    feature; "dcml" the DCML network over `features`. `pretrained`: None/"none", "imagenet" or a file path.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    spec = parse_arch(arch)
    names = check_features(features)
    if method == "margin" and names != MARGIN_FEATURES:
        raise ValueError(f"method 'margin' has the single head {MARGIN_FEATURES}, got features {list(names)}")
    if method == "dcml":
        check_dcml_args(embed_dim, ensemble_num, compos_num, names, eval_on)
    else:
        check_positive(embed_dim=embed_dim)
    trunk, feature_dim = build_backbone(spec.backbone, pretrained, spec.frozen_bn)
    if method == "dcml":
        return DCMLNet(
            trunk, feature_dim, embed_dim, ensemble_num, compos_num, names, spec.normalize, eval_on
        )
    return EmbeddingNet(trunk, feature_dim, names, embed_dim, spec.normalize)
