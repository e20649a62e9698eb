"""JSON files: atomic, strict writes, and reads that fail with one clear line.

Every JSON file the project writes is strict JSON (RFC 8259): a NaN or infinite number
(a correlation of a constant signal, a mean over nothing) is written as ``null``, never as
the bare ``NaN`` / ``Infinity`` that Python's :mod:`json` emits and other parsers reject.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cospeech.atomic import atomic_path
from cospeech.errors import CospeechError, InputError


def finite_or_none(data: Any) -> Any:
    """``data`` with every non-finite float (in nested dicts, lists, tuples) replaced by
    None; anything else unchanged."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def dumps(data: Any, sort_keys: bool = False, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (non-finite floats become ``null``); ``indent`` None:
    one line (for JSON Lines files)."""
    return json.dumps(finite_or_none(data), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Write ``data`` as strict, indented JSON ending in a newline (atomically)."""
    text = dumps(data, sort_keys)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json(path: str | Path, error: type[CospeechError] = InputError) -> Any:
    """The data in JSON file ``path``; ``error`` (one line) if it is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise error(f"{path}: not readable JSON ({exc})") from None
