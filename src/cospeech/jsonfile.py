"""JSON files: atomic writes, and reads that fail with one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cospeech.atomic import atomic_path
from cospeech.errors import CospeechError, InputError


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Write ``data`` as indented JSON ending in a newline (atomically)."""
    with atomic_path(path) as tmp:
        text = json.dumps(data, indent=2, sort_keys=sort_keys)
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json(path: str | Path, error: type[CospeechError] = InputError) -> Any:
    """The data in JSON file ``path``; ``error`` (one line) if it is missing or unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise error(f"{path}: not readable JSON ({exc})") from None
