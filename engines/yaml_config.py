"""Maps a YAML mapping (or a saved config dict) onto nested option dataclasses, checking every value.

Live and training configs both go through `build_dataclass`, so an unknown key or a value of the wrong
type is the same one-line error everywhere, naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def build_dataclass(cls: type[T], values: dict[str, Any], where: str, error: type[Exception]) -> T:
    """`cls(**values)` with nested mappings built into nested dataclasses and every value type-checked.

    `where` starts each message (usually the file); `error` is the caller's user-facing error class.
    Construction goes through `__init__`, so `__post_init__` validation runs and its TypeError or
    ValueError becomes `error` too.
    """
    return _build(cls, values, where, error, prefix="")


def _build(cls: type[T], values: dict[str, Any], where: str, error: type[Exception], prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise error(f"{where}: unknown key '{name}' (known: {', '.join(known)})")
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise error(f"{where}: '{name}' must be a mapping, got {value!r}")
            kwargs[key] = _build(hint, value, where, error, prefix=f"{name}.")
        else:
            kwargs[key] = _checked(value, hint, f"{where}: '{name}'", error)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        section = f" {prefix.rstrip('.')}:" if prefix else ""
        raise error(f"{where}:{section} {exc}") from None


def _checked(value: Any, hint: Any, label: str, error: type[Exception]) -> Any:
    """`value` if it fits `hint` (ints widened to float, lists to tuple, str to Path), else `error`."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if union else (hint,)
    for option in allowed:
        if typing.get_origin(option) is typing.Literal:
            if value in typing.get_args(option):
                return value
            continue
        kind = typing.get_origin(option) or option
        if kind is Any:
            return value
        if isinstance(value, bool) and kind in (int, float):
            continue  # YAML `yes`/`true` is never a number
        if kind is float and isinstance(value, int | float):
            return float(value)
        if kind is tuple and isinstance(value, list | tuple):
            return tuple(value)  # YAML and JSON have lists only
        if kind is Path and isinstance(value, str | Path):
            return Path(value)
        if isinstance(kind, type) and isinstance(value, kind):
            return value
    expected = " or ".join(_describe(option) for option in allowed)
    raise error(f"{label} must be {expected}, got {value!r}")


def _describe(option: Any) -> str:
    if typing.get_origin(option) is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(option))
    return getattr(option, "__name__", None) or repr(option)
