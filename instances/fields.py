"""Field checks shared by every instance reader: each failure names its JSON path.

The JSON Schemas catch shape errors first; these checks catch what a schema cannot say well
(and guard the Python API, where no schema runs).
"""
from __future__ import annotations

import math
from typing import Any

from servopt.errors import InputError


def number(data: dict, key: str, path: str, *, minimum: float | None = None, exclusive_minimum: float | None = None,
           maximum: float | None = None, default: Any = ..., allow_none: bool = False) -> float:
    where = f"{path}.{key}" if path else key
    if key not in data:
        if default is ...:
            raise InputError(where, "required field is missing")
        return default
    value = data[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(where, f"expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(where, f"must be >= {minimum:g}, got {value!r}")
    if exclusive_minimum is not None and value <= exclusive_minimum:
        raise InputError(where, f"must be > {exclusive_minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise InputError(where, f"must be <= {maximum:g}, got {value!r}")
    return float(value)


def integer(data: dict, key: str, path: str, *, minimum: int | None = None, maximum: int | None = None,
            default: Any = ..., allow_none: bool = False) -> int:
    where = f"{path}.{key}" if path else key
    if key not in data:
        if default is ...:
            raise InputError(where, "required field is missing")
        return default
    value = data[key]
    if value is None and allow_none:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(where, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(where, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(where, f"must be <= {maximum}, got {value}")
    return value


def string(data: dict, key: str, path: str, *, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
    where = f"{path}.{key}" if path else key
    if key not in data:
        if default is ...:
            raise InputError(where, "required field is missing")
        return default
    value = data[key]
    if not isinstance(value, str) or not value:
        raise InputError(where, f"expected a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise InputError(where, f"must be one of {', '.join(choices)}; got '{value}'")
    return value


def array(data: dict, key: str, path: str, *, non_empty: bool = True, default: Any = ...) -> list:
    where = f"{path}.{key}" if path else key
    if key not in data:
        if default is ...:
            raise InputError(where, "required field is missing")
        return default
    value = data[key]
    if not isinstance(value, list):
        raise InputError(where, f"expected an array, got {type(value).__name__}")
    if non_empty and not value:
        raise InputError(where, "must not be empty")
    return value


def unique_ids(items: list, path: str, key: str = "id") -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        ident = item.get(key) if isinstance(item, dict) else getattr(item, key)
        if ident in seen:
            raise InputError(f"{path}[{i}].{key}", f"duplicate id '{ident}' (first at {path}[{seen[ident]}])")
        seen[ident] = i
