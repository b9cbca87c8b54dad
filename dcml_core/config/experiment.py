"""The whole run's configuration: the groups of ``dcml_core/config/`` plus top-level run settings."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from dcml_core.config.coerce import build_group, coerce, fail, unknown_key
from dcml_core.config.data import DataConfig
from dcml_core.config.model import ModelConfig
from dcml_core.config.objective import DivaConfig, LossConfig, MinerConfig
from dcml_core.config.training import EvalConfig, OptimConfig, ScheduleConfig

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
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto"  # auto: bf16 where the GPU has it natively, else fp16
    channels_last: bool = True  # CUDA only
    deterministic: bool = True  # on CUDA also torch's deterministic algorithms (docs/gpu.md: the cost)
    checkpoint_every: int = 5  # sweeps: a checkpoint every N epochs, plus at ASHA rungs and the last epoch

    def __post_init__(self) -> None:
        for name in _GROUPS:
            getattr(self, name).validate(name)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            fail("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.checkpoint_every < 1:
            fail("checkpoint_every", self.checkpoint_every, "a positive number of epochs")
        if self.data.sampler == "distinct_classes" and self.data.val_fraction >= 0.99:
            fail("data.val_fraction", self.data.val_fraction, "a fraction that leaves training classes")

    # ------------------------------------------------------------------ construction / export
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None) -> ExperimentConfig:
        """Build from a nested dict; unknown keys and invalid values raise :class:`ConfigError`."""
        d = dict(d or {})
        kwargs: dict[str, Any] = {}
        top_fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key not in top_fields:
                unknown_key(key, list(top_fields))
            if key in _GROUPS:
                if isinstance(value, _GROUPS[key]):
                    kwargs[key] = value
                    continue
                if not isinstance(value, dict):
                    fail(key, value, f"a dict with keys from {[f.name for f in dataclasses.fields(_GROUPS[key])]}")
                kwargs[key] = build_group(_GROUPS[key], value, key)
            else:
                kwargs[key] = coerce(value, typing.get_type_hints(cls)[key], key)
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
