"""Error types that end in one clear line for the user (the CLI prints them, no traceback)."""

import math


class CospeechError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class InputError(CospeechError, ValueError):
    """Bad user input: a file that is not what it should be, wrong shapes, NaNs, ..."""


class CheckpointError(CospeechError):
    """A checkpoint that cannot be loaded: missing/unexpected keys, wrong shapes, unsafe format."""


def check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    """:class:`InputError` ``"{name} must be in [low, high], got value"`` unless ``value``
    lies in the closed range (``high`` None: ``>= low`` and finite); NaN never passes.
    ``name`` is what the user typed (``--chunk-frames``), so the message names the flag."""
    got = _number(value)
    if high is None:
        if not (math.isfinite(value) and value >= low):
            raise InputError(f"{name} must be >= {_number(low)}, got {got}")
    elif not low <= value <= high:
        raise InputError(f"{name} must be in [{_number(low)}, {_number(high)}], got {got}")


def count(number: int, noun: str) -> str:
    """``"1 frame"``, ``"2 frames"``, ``"0 frames"``: a number with its noun (plural in -s)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
