"""Model configuration: method, backbone and embedding heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dcml_core.config.coerce import ConfigError, check_registered, fail
from dcml_core.head_names import DEEP_CLUSTERING, DISCRIMINATIVE


@dataclass(frozen=True)
class ModelConfig:
    """Network: method, backbone and embedding heads (algorithms.md §1.1, §2.1, §3.1)."""

    method: Literal["margin", "diva", "dcml"] = "margin"
    arch: str = "resnet50_frozen_normalize"
    embed_dim: int = 128
    # "auto": ImageNet V1 weights for the real data sets (error if not available offline), none for the demo.
    pretrained: str = "auto"
    features: tuple[str, ...] = (DISCRIMINATIVE,)  # embedding heads, names from the HEADS registry
    ensemble_num: int = 4  # DCML K
    compos_num: int = 4  # DCML M
    dis_on_subembeddings: bool = False  # DCML §3.6 reconstruction; off = released code
    eval_on: Literal["composites", "subembeddings"] = "composites"

    def resolved_pretrained(self, dataset: str) -> str:
        """What ``pretrained`` loads: 'auto' means ImageNet for the real data sets and none for the demo."""
        if self.pretrained != "auto":
            return self.pretrained
        return "none" if dataset == "demo" else "imagenet"

    def validate(self, prefix: str = "model") -> None:
        # local imports keep the configuration importable without torch (analysis reads it)
        from dcml_core.models.backbones import parse_arch
        from dcml_core.models.dcml_net import composites_per_head
        from dcml_core.registry import HEADS

        try:
            parse_arch(self.arch)
        except ValueError as err:
            raise ConfigError(f"invalid value {self.arch!r} for '{prefix}.arch': {err}") from None
        for name in ("embed_dim", "ensemble_num", "compos_num"):
            if getattr(self, name) < 1:
                fail(f"{prefix}.{name}", getattr(self, name), "a positive integer")
        if not self.features:
            fail(f"{prefix}.features", self.features, f"a non-empty list from {list(HEADS.available())}")
        for feat in self.features:
            check_registered(f"{prefix}.features", feat, HEADS)
        if len(set(self.features)) != len(self.features):
            fail(f"{prefix}.features", self.features, "distinct feature names")
        if self.features[0] != DISCRIMINATIVE:
            fail(f"{prefix}.features", self.features, f"a list starting with '{DISCRIMINATIVE}'")
        if self.method == "margin" and self.features != (DISCRIMINATIVE,):
            raise ConfigError(
                f"'{prefix}.features' is {list(self.features)} but method 'margin' trains only the "
                f"'{DISCRIMINATIVE}' head; use method 'diva' or 'dcml' for several heads"
            )
        if self.method == "dcml":
            if DEEP_CLUSTERING in self.features:
                raise ConfigError(
                    f"'{prefix}.features' contains '{DEEP_CLUSTERING}': DCML with deep clustering is broken in "
                    f"the reference (algorithms.md §7 C4) and not supported; drop it or use method 'diva'"
                )
            try:
                composites_per_head(self.compos_num, self.features, f"'{prefix}.compos_num' ({self.compos_num})")
            except ValueError as err:
                raise ConfigError(str(err)) from None
        elif self.dis_on_subembeddings or self.eval_on != "composites":
            raise ConfigError(
                f"'{prefix}.dis_on_subembeddings' / '{prefix}.eval_on' apply only to method 'dcml'"
            )
