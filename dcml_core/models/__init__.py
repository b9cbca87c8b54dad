"""Networks: frozen-BN backbones, DiVA / Revisiting heads, DCML compositors, momentum key encoder + queue."""

from dcml_core.models.backbones import (
    ARCHS,
    BACKBONES,
    ArchSpec,
    Trunk,
    build_backbone,
    load_trunk_weights,
    parse_arch,
    resolve_weights,
)
from dcml_core.models.bninception import BNInception
from dcml_core.models.dcml_net import DCMLNet, composites_per_head
from dcml_core.models.embedding_net import EmbeddingNet, ModelOutput
from dcml_core.models.factory import METHODS, build_model, input_convention
from dcml_core.models.momentum import KeyQueue, MomentumEncoder

__all__ = [
    "ARCHS",
    "BACKBONES",
    "METHODS",
    "ArchSpec",
    "BNInception",
    "DCMLNet",
    "EmbeddingNet",
    "KeyQueue",
    "ModelOutput",
    "MomentumEncoder",
    "Trunk",
    "build_backbone",
    "build_model",
    "composites_per_head",
    "input_convention",
    "load_trunk_weights",
    "parse_arch",
    "resolve_weights",
]
