"""Frozen, typed experiment configuration built once from a nested dict.

One tree describes a run: ``data``, ``model``, ``loss``, ``diva``, ``miner``, ``optim``, ``schedule``,
``eval`` and top-level run settings (``seed``, ``device``...). The original command-line flags
(``dcml_core/train.py``), the search spaces (``search_spaces/``) and the checkpoints all map onto this tree,
each in one place. Defaults are the reference defaults of algorithms.md unless a docstring says otherwise.

Example:
    >>> cfg = ExperimentConfig.from_dict({"data": {"dataset": "demo"}, "model": {"method": "dcml"}})
    >>> cfg.model.compos_num
    4
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "DivaConfig",
    "MinerConfig",
    "OptimConfig",
    "ScheduleConfig",
    "EvalConfig",
    "ExperimentConfig",
    "DIVA_FEATURES",
]

DIVA_FEATURES = ("discriminative", "selfsimilarity", "shared", "intra", "dc")
DATASETS = ("cub200", "cars196", "online_products", "demo")


class ConfigError(ValueError):
    """An invalid configuration key or value; the message names the key and what is allowed."""


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"invalid value {value!r} for '{key}': expected {allowed}")


@dataclass(frozen=True)
class DataConfig:
    """Dataset, split and batching (algorithms.md §1.4, §4)."""

    dataset: Literal["cub200", "cars196", "online_products", "demo"] = "demo"  # not cub200: runs with no data
    root: str | None = None  # dataset folder or its parent; None = the embedded demo cache for "demo"
    val_fraction: float = 0.2  # share of TRAIN classes held out as a class-disjoint validation split
    val_seed: int = 0
    batch_size: int = 112
    samples_per_class: int = 2
    sampler: Literal["class_random", "distinct_classes"] = "class_random"
    num_workers: int = 4
    crop_size: int | None = None  # None: 224 (227 for BN-Inception), 64 for the demo data
    resize_size: int | None = None  # None: 256, 72 for the demo data
    augmentation: Literal["base", "realistic"] = "base"
    # RandomResizedCrop scale range; None: torchvision's (0.08, 1) as the reference, (0.5, 1) for the demo data,
    # whose 64 px glyphs small crops would cut away.
    crop_scale: tuple[float, ...] | None = None
    skip_bad_images: bool = False
    verify_images: bool = True
    # "cached": decoded-image cache + batched augmentation on the device (dcml_core/data/cached_pipeline.py);
    # same transform, not the same random draws as "reference" (JPEG decoding + torchvision per image).
    pipeline: Literal["reference", "cached"] = "reference"
    cache_size: int | None = None  # cached pipeline: shorter side kept in the cache; None: 2 x resize size

    def image_sizes(self, arch: str) -> tuple[int, int]:
        """(crop, resize) sizes: the configured ones, else the reference sizes (algorithms.md §4)."""
        if self.dataset == "demo":
            crop, resize = 64, 72
        elif arch.startswith("bninception"):
            crop, resize = 227, 256
        else:
            crop, resize = 224, 256
        return self.crop_size or crop, self.resize_size or max(resize, self.crop_size or crop)

    def resolved_crop_scale(self) -> tuple[float, float]:
        if self.crop_scale is not None:
            return (self.crop_scale[0], self.crop_scale[1])
        return (0.5, 1.0) if self.dataset == "demo" else (0.08, 1.0)

    def validate(self, prefix: str = "data") -> None:
        if self.crop_scale is not None and (
            len(self.crop_scale) != 2 or not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0
        ):
            _fail(f"{prefix}.crop_scale", self.crop_scale, "two numbers 0 < low <= high <= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            _fail(f"{prefix}.val_fraction", self.val_fraction, "a fraction in [0, 1)")
        for name in ("batch_size", "samples_per_class", "crop_size", "resize_size", "cache_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                _fail(f"{prefix}.{name}", getattr(self, name), "a positive integer")
        if self.pipeline == "cached" and self.augmentation != "base":
            raise ConfigError(
                f"'{prefix}.pipeline' 'cached' implements augmentation 'base' only; use pipeline 'reference' "
                f"for augmentation {self.augmentation!r}"
            )
        if self.num_workers < 0:
            _fail(f"{prefix}.num_workers", self.num_workers, "an integer >= 0")
        if self.batch_size % self.samples_per_class:
            raise ConfigError(
                f"'{prefix}.batch_size' ({self.batch_size}) must be a multiple of "
                f"'{prefix}.samples_per_class' ({self.samples_per_class}); e.g. use batch_size "
                f"{self.batch_size - self.batch_size % self.samples_per_class or self.samples_per_class}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Network: method, backbone and embedding heads (algorithms.md §1.1, §2.1, §3.1)."""

    method: Literal["margin", "diva", "dcml"] = "margin"
    arch: str = "resnet50_frozen_normalize"
    embed_dim: int = 128
    # "auto": ImageNet V1 weights for the real data sets (error if not available offline), none for the demo.
    pretrained: str = "auto"
    features: tuple[str, ...] = ("discriminative",)
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
        from dcml_core.models.backbones import parse_arch  # local: keeps config importable alone

        try:
            parse_arch(self.arch)
        except ValueError as err:
            raise ConfigError(f"invalid value {self.arch!r} for '{prefix}.arch': {err}") from None
        for name in ("embed_dim", "ensemble_num", "compos_num"):
            if getattr(self, name) < 1:
                _fail(f"{prefix}.{name}", getattr(self, name), "a positive integer")
        if not self.features:
            _fail(f"{prefix}.features", self.features, f"a non-empty list from {list(DIVA_FEATURES)}")
        for feat in self.features:
            if feat not in DIVA_FEATURES:
                _fail(f"{prefix}.features", feat, f"names from {list(DIVA_FEATURES)}")
        if len(set(self.features)) != len(self.features):
            _fail(f"{prefix}.features", self.features, "distinct feature names")
        if self.features[0] != "discriminative":
            _fail(f"{prefix}.features", self.features, "a list starting with 'discriminative'")
        if self.method == "margin" and self.features != ("discriminative",):
            raise ConfigError(
                f"'{prefix}.features' is {list(self.features)} but method 'margin' trains only the "
                "'discriminative' head; use method 'diva' or 'dcml' for several heads"
            )
        if self.method == "dcml":
            if "dc" in self.features:
                raise ConfigError(
                    f"'{prefix}.features' contains 'dc': DCML with deep clustering is broken in the reference "
                    "(algorithms.md §7 C4) and not supported; drop 'dc' or use method 'diva'"
                )
            n_heads = len(self.features)
            if self.compos_num % n_heads:
                raise ConfigError(
                    f"'{prefix}.compos_num' ({self.compos_num}) must be a multiple of the number of heads "
                    f"({n_heads}: {list(self.features)}); allowed values: "
                    f"{[n_heads * i for i in range(1, 5)]}, ..."
                )
        elif self.dis_on_subembeddings or self.eval_on != "composites":
            raise ConfigError(
                f"'{prefix}.dis_on_subembeddings' / '{prefix}.eval_on' apply only to method 'dcml'"
            )


@dataclass(frozen=True)
class LossConfig:
    """Margin loss with learnable per-class beta (algorithms.md §1.2)."""

    name: Literal["margin"] = "margin"
    margin: float = 0.2
    beta: float = 1.2
    beta_lr: float = 5e-4
    nu: float = 0.0  # > 0 is our fix of reference bug R1 (the reference raises NameError)
    beta_constant: bool = False

    def validate(self, prefix: str = "loss") -> None:
        for name in ("margin", "beta_lr", "nu"):
            if getattr(self, name) < 0:
                _fail(f"{prefix}.{name}", getattr(self, name), "a number >= 0")


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
        if "dc" in features:
            return ()
        if len(features) == 4 and "shared" in features:
            return ("selfsimilarity-discriminative", "shared-discriminative", "intra-discriminative")
        if len(features) == 3 and "shared" in features and "selfsimilarity" in features:
            return ("selfsimilarity-discriminative", "shared-discriminative", "shared-selfsimilarity")
        return ()

    def validate(self, prefix: str = "diva") -> None:
        for direction in self.decorrelations or ():
            parts = direction.split("-")
            if len(parts) != 2 or any(p not in DIVA_FEATURES for p in parts):
                _fail(f"{prefix}.decorrelations", direction, f"'source-target' with names from {list(DIVA_FEATURES)}")
        for name in ("alpha_ssl", "alpha_shared", "alpha_intra", "decorrnet_lr"):
            if getattr(self, name) < 0:
                _fail(f"{prefix}.{name}", getattr(self, name), "a number >= 0")
        if any(r < 0 for r in self.rho_decorrelation):
            _fail(f"{prefix}.rho_decorrelation", self.rho_decorrelation, "numbers >= 0")
        if not 0.0 <= self.moco_momentum < 1.0:
            _fail(f"{prefix}.moco_momentum", self.moco_momentum, "a number in [0, 1)")
        if self.moco_temperature <= 0:
            _fail(f"{prefix}.moco_temperature", self.moco_temperature, "a number > 0")
        for name in ("moco_n_key_batches", "decorrnet_dim", "dc_update_f", "dc_ncluster"):
            if getattr(self, name) < 1:
                _fail(f"{prefix}.{name}", getattr(self, name), "a positive integer")


@dataclass(frozen=True)
class MinerConfig:
    """Batch miner for the discriminative margin loss (algorithms.md §1.3)."""

    name: Literal["distance"] = "distance"
    lower_cutoff: float = 0.5
    upper_cutoff: float = 1.4
    apply_upper_cutoff: bool = False  # the reference never applies it

    def validate(self, prefix: str = "miner") -> None:
        if not 0.0 <= self.lower_cutoff < 2.0:
            _fail(f"{prefix}.lower_cutoff", self.lower_cutoff, "a distance in [0, 2)")
        if self.upper_cutoff <= self.lower_cutoff:
            _fail(f"{prefix}.upper_cutoff", self.upper_cutoff, f"a distance > lower_cutoff ({self.lower_cutoff})")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (algorithms.md §1.5): Adam with L2 weight decay; criteria get their own groups."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-5
    weight_decay: float = 4e-4
    momentum: float = 0.9  # sgd only

    def validate(self, prefix: str = "optim") -> None:
        if self.lr <= 0:
            _fail(f"{prefix}.lr", self.lr, "a learning rate > 0")
        if self.weight_decay < 0:
            _fail(f"{prefix}.weight_decay", self.weight_decay, "a number >= 0")


@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs and MultiStepLR(tau, gamma), stepped once per epoch after evaluation (algorithms.md §1.5)."""

    n_epochs: int = 150
    tau: tuple[int, ...] = (1000,)
    gamma: float = 0.3

    def validate(self, prefix: str = "schedule") -> None:
        if self.n_epochs < 1:
            _fail(f"{prefix}.n_epochs", self.n_epochs, "a positive integer")
        if any(t < 1 for t in self.tau):
            _fail(f"{prefix}.tau", self.tau, "epochs >= 1 at which the learning rate is multiplied by gamma")
        if list(self.tau) != sorted(self.tau):
            _fail(f"{prefix}.tau", self.tau, "epochs in increasing order")
        if not 0.0 < self.gamma <= 1.0:
            _fail(f"{prefix}.gamma", self.gamma, "a decay factor in (0, 1]")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (algorithms.md §5): which embeddings, metrics and when."""

    evaltypes: tuple[str, ...] = ("discriminative",)
    recall_ks: tuple[int, ...] | None = None  # None: (1, 2, 4, 8), SOP (1, 10, 100)
    metrics: tuple[str, ...] = ("recall", "nmi", "f1", "map_c", "map@r")
    nmi_k: int | None = None  # None: number of TRAIN classes, as the reference
    test_every: int = 0  # evaluate the test split every N epochs; 0 = only when asked (reporting)
    batch_size: int | None = None  # None: data.batch_size
    device: str = "auto"  # kNN / k-means device: auto, cpu, cuda

    def validate(self, prefix: str = "eval") -> None:
        allowed = ("recall", "nmi", "f1", "map_c", "map@r")
        for m in self.metrics:
            if m not in allowed:
                _fail(f"{prefix}.metrics", m, f"names from {list(allowed)}")
        if self.recall_ks is not None and (not self.recall_ks or any(k < 1 for k in self.recall_ks)):
            _fail(f"{prefix}.recall_ks", self.recall_ks, "positive integers")
        if self.test_every < 0:
            _fail(f"{prefix}.test_every", self.test_every, "an integer >= 0")
        if not self.evaltypes:
            _fail(f"{prefix}.evaltypes", self.evaltypes, "at least one evaltype, e.g. 'discriminative' or 'all'")

    def resolved_recall_ks(self, dataset: str) -> tuple[int, ...]:
        """Recall@k values: the configured ones, or the reference defaults for the data set."""
        if self.recall_ks is not None:
            return self.recall_ks
        return (1, 10, 100) if dataset == "online_products" else (1, 2, 4, 8)


_GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "diva": DivaConfig,
    "miner": MinerConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole run. Build it with :meth:`from_dict`; it is immutable afterwards."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    diva: DivaConfig = field(default_factory=DivaConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 1
    device: str = "auto"  # auto = cuda when available, else cpu
    amp: bool = True  # mixed precision, CUDA only
    channels_last: bool = True  # CUDA only
    deterministic: bool = True

    def __post_init__(self) -> None:
        for name in _GROUPS:
            getattr(self, name).validate(name)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            _fail("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.data.sampler == "distinct_classes" and self.data.val_fraction >= 0.99:
            _fail("data.val_fraction", self.data.val_fraction, "a fraction that leaves training classes")

    # ------------------------------------------------------------------ construction / export
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None) -> ExperimentConfig:
        """Build from a nested dict; unknown keys and invalid values raise :class:`ConfigError`."""
        d = dict(d or {})
        kwargs: dict[str, Any] = {}
        top_fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key not in top_fields:
                _unknown(key, list(top_fields))
            if key in _GROUPS:
                if isinstance(value, _GROUPS[key]):
                    kwargs[key] = value
                    continue
                if not isinstance(value, dict):
                    _fail(key, value, f"a dict with keys from {[f.name for f in dataclasses.fields(_GROUPS[key])]}")
                kwargs[key] = _build_group(_GROUPS[key], value, key)
            else:
                kwargs[key] = _coerce(value, typing.get_type_hints(cls)[key], key)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples) that :meth:`from_dict` accepts back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))

    def flat(self) -> dict[str, Any]:
        """``{"data.batch_size": 112, ...}``: one short key per value, for MLflow parameters."""
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    def replace(self, **groups: dict[str, Any]) -> ExperimentConfig:
        """A copy with some values changed, e.g. ``cfg.replace(schedule={"n_epochs": 2})`` (validated)."""
        d = self.to_dict()
        for key, value in groups.items():
            if isinstance(value, dict) and isinstance(d.get(key), dict):
                d[key].update(value)
            else:
                d[key] = value
        return ExperimentConfig.from_dict(d)

    @property
    def heads(self) -> tuple[str, ...]:
        """Embedding heads the model builds (always 'discriminative' first)."""
        return self.model.features


def _unknown(key: str, allowed: list[str]) -> None:
    close = difflib.get_close_matches(key.split(".")[-1], allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown configuration key '{key}'{hint} Allowed keys: {sorted(allowed)}")


def _build_group(klass: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(klass)
    names = [f.name for f in dataclasses.fields(klass)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            _unknown(f"{prefix}.{key}", names)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    return klass(**kwargs)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (with gentle coercions) or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"invalid value {value!r} for '{key}'")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(key, value, f"one of {list(allowed)}{hint}")
        return value
    if origin is tuple:
        inner = get_args(tp)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]  # a single value where a list is expected (e.g. tau 55)
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        _fail(key, value, "true or false")
    if tp is int:
        if isinstance(value, bool):
            _fail(key, value, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        # numpy integers (from search spaces) end here
        if hasattr(value, "__index__"):
            return int(value)
        _fail(key, value, "an integer")
    if tp is float:
        if isinstance(value, bool):
            _fail(key, value, "a number")
        try:
            out = float(value)
        except (TypeError, ValueError):
            _fail(key, value, "a number")
        if out != out or out in (float("inf"), float("-inf")):
            _fail(key, value, "a finite number")
        return out
    if tp is str:
        if not isinstance(value, str):
            _fail(key, value, "a string")
        return value
    raise ConfigError(f"unsupported type {tp} for '{key}'")  # pragma: no cover - programming error
