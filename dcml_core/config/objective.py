"""Objective configuration: the loss and miner of the mined heads, and DiVA's auxiliary objectives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dcml_core.config.coerce import check_registered, fail
from dcml_core.head_names import DISCRIMINATIVE, INTRA, SELFSIMILARITY, SHARED


@dataclass(frozen=True)
class LossConfig:
    """Loss of the mined heads (discriminative, shared, intra): ``name`` from the LOSSES registry.

    The other fields parametrise the margin loss with learnable per-class beta (algorithms.md §1.2).
    """

    name: str = "margin"
    margin: float = 0.2
    beta: float = 1.2
    beta_lr: float = 5e-4
    nu: float = 0.0  # > 0 is our fix of reference bug R1 (the reference raises NameError)
    beta_constant: bool = False

    def validate(self, prefix: str = "loss") -> None:
        from dcml_core.registry import LOSSES  # local: keeps the configuration importable without torch

        check_registered(f"{prefix}.name", self.name, LOSSES)
        for name in ("margin", "beta_lr", "nu"):
            if getattr(self, name) < 0:
                fail(f"{prefix}.{name}", getattr(self, name), "a number >= 0")


@dataclass(frozen=True)
class MinerConfig:
    """Batch miner of the discriminative head: ``name`` from the MINERS registry (algorithms.md §1.3)."""

    name: str = "distance"
    lower_cutoff: float = 0.5
    upper_cutoff: float = 1.4
    apply_upper_cutoff: bool = False  # the reference never applies it

    def validate(self, prefix: str = "miner") -> None:
        from dcml_core.registry import MINERS  # local: keeps the configuration importable without torch

        check_registered(f"{prefix}.name", self.name, MINERS)
        if not 0.0 <= self.lower_cutoff < 2.0:
            fail(f"{prefix}.lower_cutoff", self.lower_cutoff, "a distance in [0, 2)")
        if self.upper_cutoff <= self.lower_cutoff:
            fail(f"{prefix}.upper_cutoff", self.upper_cutoff, f"a distance > lower_cutoff ({self.lower_cutoff})")


@dataclass(frozen=True)
class DivaConfig:
    """DiVA auxiliary objectives (algorithms.md §2.2, §2.4); used by methods 'diva' and 'dcml'."""

    ssl: Literal["fast_moco"] = "fast_moco"
    sharing: Literal["random", "standard"] = "random"
    intra: Literal["random"] = "random"
    alpha_ssl: float = 0.3
    alpha_shared: float = 0.3
    alpha_intra: float = 0.3
    rho_decorrelation: tuple[float, ...] = (1500.0,)
    # The reference pairs rho with directions by zip: one value applies to the FIRST direction only (§7 D5).
    # True applies a single value to every direction.
    rho_broadcast: bool = False
    # None: the reference rule (diva_main.py): 4 heads -> each auxiliary head against 'discriminative';
    # 3 heads with shared and selfsimilarity -> also 'shared-selfsimilarity'; 'dc' -> none; otherwise none.
    decorrelations: tuple[str, ...] | None = None
    decorrnet_dim: int = 512
    decorrnet_lr: float = 1e-5
    moco_momentum: float = 0.9
    moco_temperature: float = 0.1
    moco_n_key_batches: int = 50
    moco_lower_cutoff: float = 0.5
    moco_upper_cutoff: float = 1.4
    fixed: bool = False  # corrected DaNCE normalisation (DiVA --diva_fixed); False = published code
    dc_update_f: int = 2
    dc_ncluster: int = 300

    def resolved_decorrelations(self, features: tuple[str, ...]) -> tuple[str, ...]:
        """Decorrelation directions 'source-target' for the given heads (algorithms.md §2.2.5)."""
        if self.decorrelations is not None:
            return self.decorrelations
        from dcml_core.registry import HEADS  # local: keeps the configuration importable without torch

        if not all(HEADS.get(name).decorrelates for name in features):  # the deep-clustering head (L49-50)
            return ()
        if len(features) == 4 and SHARED in features:
            return (f"{SELFSIMILARITY}-{DISCRIMINATIVE}", f"{SHARED}-{DISCRIMINATIVE}", f"{INTRA}-{DISCRIMINATIVE}")
        if len(features) == 3 and SHARED in features and SELFSIMILARITY in features:
            return (f"{SELFSIMILARITY}-{DISCRIMINATIVE}", f"{SHARED}-{DISCRIMINATIVE}", f"{SHARED}-{SELFSIMILARITY}")
        return ()

    def validate(self, prefix: str = "diva") -> None:
        from dcml_core.registry import HEADS  # local: keeps the configuration importable without torch

        for direction in self.decorrelations or ():
            parts = direction.split("-")
            if len(parts) != 2 or any(p not in HEADS for p in parts):
                fail(f"{prefix}.decorrelations", direction, f"'source-target' with names from {list(HEADS.available())}")
        for name in ("alpha_ssl", "alpha_shared", "alpha_intra", "decorrnet_lr"):
            if getattr(self, name) < 0:
                fail(f"{prefix}.{name}", getattr(self, name), "a number >= 0")
        if any(r < 0 for r in self.rho_decorrelation):
            fail(f"{prefix}.rho_decorrelation", self.rho_decorrelation, "numbers >= 0")
        if not 0.0 <= self.moco_momentum < 1.0:
            fail(f"{prefix}.moco_momentum", self.moco_momentum, "a number in [0, 1)")
        if self.moco_temperature <= 0:
            fail(f"{prefix}.moco_temperature", self.moco_temperature, "a number > 0")
        for name in ("moco_n_key_batches", "decorrnet_dim", "dc_update_f", "dc_ncluster"):
            if getattr(self, name) < 1:
                fail(f"{prefix}.{name}", getattr(self, name), "a positive integer")


