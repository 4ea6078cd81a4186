"""Typed reads of a parsed TOML table: the checks every config section shares.

Every error names the key by its dotted path, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tuning_energy.errors import ConfigError

NUM = (int, float)
OPT_NUM = (int, float, type(None))


def type_name(t: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(t, getattr(t, "__name__", str(t)))


def value_of(table: dict, path: str, key: str, types: tuple, default: Any, allowed=None) -> Any:
    """table[key] checked against `types` (and `allowed`); `default` when absent."""
    if key not in table:
        return default
    value = table[key]
    dotted = f"{path}.{key}" if path else key
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = " or ".join(type_name(t) for t in types if t is not type(None))
        raise ConfigError(f"{dotted} = {value!r}: must be {want}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{dotted} = {value!r}: allowed values are {', '.join(map(repr, allowed))}")
    return value


def check_keys(table: dict, path: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = path or "the top level"
        raise ConfigError(
            f"{path + '.' if path else ''}{unknown[0]}: unknown key in {where}; "
            f"allowed keys are {', '.join(sorted(allowed))}"
        )


def table_of(doc: dict, key: str, path: str = "") -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path + '.' if path else ''}{key}: must be a table ([{key}])")
    return value


def positive(path: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero) or (isinstance(value, float) and math.isnan(value)):
        raise ConfigError(f"{path} = {value!r}: must be {'>= 0' if allow_zero else '> 0'}")


def dataclass_from(cls: type, table: dict, path: str, spec: dict[str, tuple]) -> Any:
    """spec: key -> (types, allowed or None). Defaults come from the dataclass."""
    check_keys(table, path, set(spec))
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values = {}
    for key, (types, allowed) in spec.items():
        values[key] = value_of(table, path, key, types, defaults[key], allowed)
    return cls(**values)
