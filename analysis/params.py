"""MLflow parameters back to typed configuration values, and the seed-free configuration id.

MLflow stores every parameter as text (``dcml_core.tracking.param_text``): lists as JSON
(``["discriminative", "shared"]``; single runs logged before that as ``discriminative,shared``), ``None`` as
``"None"``. :func:`canonical_flat` turns either form (or the Python values of ``ExperimentConfig.flat()``)
into the same typed flat dict, using the type annotations of the configuration dataclasses, without building
(and validating) an ``ExperimentConfig``, so reading a sweep never imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, Union, get_args, get_origin

from dcml_core import tracking
from dcml_core.config import ExperimentConfig


@lru_cache(maxsize=1)
def config_fields() -> dict[str, tuple[Any, Any]]:
    """``{"model.compos_num": (annotation, default), ...}`` for every flat key of ``ExperimentConfig``."""
    out: dict[str, tuple[Any, Any]] = {}
    top_hints = typing.get_type_hints(ExperimentConfig)
    for f in dataclasses.fields(ExperimentConfig):
        tp = top_hints[f.name]
        if dataclasses.is_dataclass(tp):
            group_default = tp()  # group dataclasses validate only inside ExperimentConfig
            hints = typing.get_type_hints(tp)
            for g in dataclasses.fields(tp):
                out[f"{f.name}.{g.name}"] = (hints[g.name], _plain(getattr(group_default, g.name)))
        else:
            out[f.name] = (tp, f.default)
    return out


def parse_value(value: Any, tp: Any) -> Any:
    """A parameter (text or Python value) as the annotation ``tp`` describes; ValueError if it cannot."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and (value is None or value == "None"):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(value, arg)
            except ValueError:
                continue
        raise ValueError(f"{value!r} does not match {tp}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ValueError(f"{value!r} is not one of {get_args(tp)}")
        return value
    if origin is tuple:
        return [parse_value(v, get_args(tp)[0]) for v in _as_list(value)]
    if tp is bool:
        return _as_bool(value)
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value
    raise ValueError(f"unsupported annotation {tp}")


def canonical_flat(params: Mapping[str, Any], fill_defaults: bool = True) -> dict[str, Any]:
    """Typed flat configuration (lists for tuples) from MLflow params or ``ExperimentConfig.flat()``.

    Keys that are not configuration keys (``data_info.*``, ``raw_config``) are dropped. A value that does not
    parse is kept as logged. Missing keys get their defaults when ``fill_defaults`` (and at least one
    configuration key is present).
    """
    fields = config_fields()
    flat = flatten(params)
    known = {k: v for k, v in flat.items() if k in fields}
    out = {k: default for k, (_, default) in fields.items()} if (fill_defaults and known) else {}
    for key, value in known.items():
        try:
            out[key] = parse_value(value, fields[key][0])
        except (ValueError, TypeError):
            out[key] = value
    return out


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.compos_num": 4}`` -> ``{"model": {"compos_num": 4}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        group, _, name = key.rpartition(".")
        (out.setdefault(group, {}) if group else out)[name] = value
    return out


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """Nested configuration dict -> dotted keys (an already flat dict is returned as is)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            out[key] = value
    return out


def config_id(flat_params: Mapping[str, Any]) -> str:
    """12 hex digits identifying a configuration up to its seed (``dcml_core.tracking.config_id``).

    Accepts MLflow params (text), ``ExperimentConfig.flat()`` or a nested config dict: the same
    configuration gives the same id in every form. Without any configuration key (e.g. a trial whose config
    did not parse, logged as ``raw_config``), the id hashes the remaining params as logged.
    """
    canon = canonical_flat(flat_params)
    return tracking.config_id(canon or {k: str(v) for k, v in flatten(flat_params).items()})


def display_value(value: Any) -> Any:
    """Cell value for a DataFrame: lists as ``a,b`` (hashable, as the single-run logger writes them)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if not isinstance(value, str):
        return [value]
    text = value.strip()
    if text.startswith("["):
        parsed = json.loads(text)  # ValueError (JSONDecodeError) when it is not JSON
        return parsed if isinstance(parsed, list) else [parsed]
    return [v.strip() for v in text.split(",")] if text else []


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ValueError(f"{value!r} is not true or false")
