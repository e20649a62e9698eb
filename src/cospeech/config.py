"""Dataclass configs with named presets, loadable from YAML.

Every config in cospeech is a (possibly nested) dataclass. ``from_dict`` builds one from
plain data and rejects unknown fields with a clear message; ``load_config`` accepts a
preset name, a YAML path, or a dict, plus dotted overrides (``"model.dim=256"``).
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cospeech.errors import InputError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain data (tuples become lists), ready for YAML/JSON."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclasses and tuples are converted."""
    if not isinstance(data, Mapping):
        raise InputError(f"config{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"config{where}: unknown field(s) {unknown} for {cls.__name__}")
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"config{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=False))
    if hint in (int, float, bool, str):
        return _scalar(hint, value, where)
    return value


def _scalar(hint: type, value: Any, where: str) -> Any:
    """``value`` as an ``int``/``float``/``bool``/``str`` field, or a one-line InputError."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is float and number:
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and number and isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, hint) and (hint is not int or not isinstance(value, bool)):
        return value
    raise InputError(f"config{where}: expected {_NAMES[hint]}, got {value!r}")


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars) to nested dict ``data``."""
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(
    cls: type[T],
    source: str | Path | Mapping[str, Any] | None = None,
    presets: Mapping[str, T] | None = None,
    overrides: list[str] | None = None,
) -> T:
    """A config from a preset name, a YAML file, a mapping or nothing (the defaults)."""
    if source is None:
        data: dict[str, Any] = to_dict(cls())
    elif isinstance(source, Mapping):
        data = dict(source)
    elif presets is not None and str(source) in presets:
        data = to_dict(presets[str(source)])
    else:
        path = Path(source)
        if path.is_dir():
            raise InputError(f"config {source!s}: is a folder, not a file")
        if not path.is_file():
            names = f"; presets: {sorted(presets)}" if presets else ""
            raise InputError(f"config {source!s}: no such file or preset{names}")
        data = read_yaml(path)
        preset = data.pop("preset", None)
        if preset is not None:
            if presets is None or preset not in presets:
                raise InputError(f"config {path}: unknown preset {preset!r}")
            base = to_dict(presets[preset])
            base.update(data)
            data = base
    return from_dict(cls, apply_overrides(data, list(overrides or [])))


def read_yaml(path: Path) -> dict[str, Any]:
    """The ``key: value`` pairs of YAML file ``path`` ({} when empty); one-line InputError
    when it cannot be read, is not YAML, or holds something else."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"config {path}: not valid YAML ({problem}{where})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"config {path}: not a readable text file ({exc})") from None
    data = loaded or {}
    if not isinstance(data, dict):
        raise InputError(
            f"config {path}: expected YAML key: value pairs, got a {type(data).__name__}"
        )
    return data


def save_config(config: Any, path: str | Path) -> None:
    """Write a dataclass config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
