"""Typed values from a nested dict: gentle coercion against the dataclass annotations, one clear error per key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, NoReturn, Union, get_args, get_origin


class ConfigError(ValueError):
    """An invalid configuration key or value; the message names the key and what is allowed."""


def fail(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise ConfigError ``invalid value <value> for '<key>': expected <allowed>``."""
    raise ConfigError(f"invalid value {value!r} for '{key}': expected {allowed}")


def check_registered(key: str, value: str, registry: Any) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` is registered (message: suggestion + available)."""
    if value not in registry:
        raise ConfigError(f"invalid value {value!r} for '{key}': {registry.unknown_message(value)}")


def unknown_key(key: str, allowed: list[str]) -> NoReturn:
    """Raise ConfigError for a key that is not a field, with a did-you-mean hint."""
    close = difflib.get_close_matches(key.split(".")[-1], allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown configuration key '{key}'{hint} Allowed keys: {sorted(allowed)}")


def build_group(klass: type, values: dict[str, Any], prefix: str) -> Any:
    """One configuration group (dataclass) from a dict; unknown keys and bad values raise ConfigError."""
    hints = typing.get_type_hints(klass)
    names = [f.name for f in dataclasses.fields(klass)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            unknown_key(f"{prefix}.{key}", names)
        kwargs[key] = coerce(value, hints[key], f"{prefix}.{key}")
    return klass(**kwargs)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (with gentle coercions) or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, get_args(tp), key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(key, value, f"one of {list(allowed)}{hint}")
        return value
    if origin is tuple:
        inner = get_args(tp)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]  # a single value where a list is expected (e.g. tau 55)
        return tuple(coerce(v, inner, key) for v in value)
    if tp is bool:
        return _coerce_bool(value, key)
    if tp is int:
        return _coerce_int(value, key)
    if tp is float:
        return _coerce_float(value, key)
    if tp is str:
        if not isinstance(value, str):
            fail(key, value, "a string")
        return value
    raise ConfigError(f"unsupported type {tp} for '{key}'")  # pragma: no cover - programming error


def _coerce_union(value: Any, args: tuple[Any, ...], key: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if errors else f"invalid value {value!r} for '{key}'")


def _coerce_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    fail(key, value, "true or false")


def _coerce_int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        fail(key, value, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if hasattr(value, "__index__"):  # numpy integers (from search spaces)
        return int(value)
    fail(key, value, "an integer")


def _coerce_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        fail(key, value, "a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        fail(key, value, "a number")
    if out != out or out in (float("inf"), float("-inf")):
        fail(key, value, "a finite number")
    return out
