"""Progress on stderr, the same for every command and library loop.

On a terminal a tqdm bar; when stderr is not a terminal (a log, a pipe, a test) at most one
plain line every ``interval_s`` seconds (``generate: 120/205 frames, 12.3 s, about 8 s
left``) and a final line when the work took at least that long, so a log stays short and
quick work prints nothing. The mode comes from :func:`configure` (``cospeech --progress``)
or the ``COSPEECH_PROGRESS`` environment variable (``auto``, ``bar``, ``lines``, ``off``);
the interval from ``COSPEECH_PROGRESS_INTERVAL`` (seconds). :func:`close_all` ends every
open bar (the CLI calls it before printing an error, so the error starts on a fresh line).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from cospeech.errors import InputError

MODES = ("auto", "bar", "lines", "off")
DEFAULT_INTERVAL_S = 5.0
MODE_VARIABLE = "COSPEECH_PROGRESS"
INTERVAL_VARIABLE = "COSPEECH_PROGRESS_INTERVAL"

T = TypeVar("T")
_now = time.monotonic  # the clock (tests replace it)


@dataclass(frozen=True)
class ProgressSettings:
    """``mode``: one of :data:`MODES` (``auto``: a bar on a terminal, lines otherwise);
    ``interval_s``: the least time between two plain lines."""

    mode: str = "auto"
    interval_s: float = DEFAULT_INTERVAL_S

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"progress mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (math.isfinite(self.interval_s) and self.interval_s >= 0):
            raise InputError(f"progress interval must be >= 0 seconds, got {self.interval_s}")


_settings: ProgressSettings | None = None  # None: the environment's (read each time)
_open: list[Progress] = []


def settings_from_environment() -> ProgressSettings:
    """Settings from ``COSPEECH_PROGRESS`` and ``COSPEECH_PROGRESS_INTERVAL`` (unset: the
    defaults)."""
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    try:
        interval = float(text) if text else DEFAULT_INTERVAL_S
    except ValueError:
        raise InputError(f"{INTERVAL_VARIABLE}={text!r}: not a number of seconds") from None
    try:
        return ProgressSettings(mode, interval)
    except InputError as exc:
        raise InputError(f"{MODE_VARIABLE}/{INTERVAL_VARIABLE}: {exc}") from None


def configure(mode: str | None = None, interval_s: float | None = None) -> ProgressSettings | None:
    """Set the mode and/or interval for this process (None: keep the current value).
    Returns the settings set before (None: none, the environment's hold) for :func:`restore`."""
    global _settings
    previous, current = _settings, current_settings()
    _settings = ProgressSettings(
        mode if mode is not None else current.mode,
        interval_s if interval_s is not None else current.interval_s,
    )
    return previous


def restore(previous: ProgressSettings | None) -> None:
    """Undo :func:`configure` (``previous``: what it returned)."""
    global _settings
    _settings = previous


def current_settings() -> ProgressSettings:
    """The settings in force: those set by :func:`configure`, else the environment's."""
    return _settings if _settings is not None else settings_from_environment()


def _effective_mode() -> str:
    """``bar``, ``lines`` or ``off`` for the current settings and stderr."""
    mode = current_settings().mode
    if mode != "auto":
        return mode
    isatty = getattr(sys.stderr, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def _plural(unit: str, count: float) -> str:
    return unit if count == 1 or unit.endswith("s") else unit + "s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class Progress:
    """Progress of ``total`` units of work (None: unknown), named ``desc``.

    Use as a context manager (or call :meth:`close`); ``enabled=False`` shows nothing.
    ``leave=False``: a terminal bar is cleared when done (for inner loops).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "step",
        *,
        initial: int = 0,
        enabled: bool = True,
        leave: bool = True,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.n = initial
        self.postfix = ""
        self._initial = initial
        self._started = _now()
        self._last_line = self._started
        self._lines = 0
        self._printed_n = initial
        self._bar = None
        self._mode = _effective_mode() if enabled else "off"
        self._interval = current_settings().interval_s
        self.closed = False
        if self._mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                dynamic_ncols=True, file=sys.stderr,
            )  # fmt: skip
        if self._mode != "off":
            _open.append(self)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(completed=exc_type is None)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._mode == "lines":
            now = _now()
            if now - self._last_line >= self._interval:
                self._line(now)

    def set_postfix(self, text: str) -> None:
        """Extra text after the count (a loss, the phase of a benchmark)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def line(self, now: float | None = None) -> str:
        """The plain line for the current state (no newline)."""
        elapsed = (now if now is not None else _now()) - self._started
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        shown = self.total if self.total is not None else self.n
        text = f"{self.desc}: {count} {_plural(self.unit, shown)}, {_duration(elapsed)}"
        done = self.n - self._initial
        if self.total is not None and done > 0 and self.n < self.total:
            left = elapsed / done * (self.total - self.n)
            text += f", about {_duration(left)} left"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def _line(self, now: float) -> None:
        print(self.line(now), file=sys.stderr, flush=True)
        self._last_line = now
        self._lines += 1
        self._printed_n = self.n

    def close(self, completed: bool = True) -> None:
        """End the progress: a terminal bar is closed; in plain lines, when ``completed``, a
        final line if the work took at least one interval and the last line shown (if any)
        has an older count."""
        if self.closed:
            return
        self.closed = True
        if self in _open:
            _open.remove(self)
        if self._bar is not None:
            self._bar.close()
        elif self._mode == "lines" and completed:
            now = _now()
            newer = self.n != self._printed_n if self._lines else True
            if newer and now - self._started >= self._interval:
                self._line(now)


def track(
    items: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "step",
    *,
    enabled: bool = True,
    leave: bool = True,
) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (``total``: ``len(items)`` when it has one).
    A unit counts as done when the next item is asked for."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, unit, enabled=enabled, leave=leave) as bar:
        for item in items:
            yield item
            bar.update()


def close_all() -> None:
    """Close every open progress, innermost first, without final lines (after an error or
    Ctrl-C, so that what is printed next starts on a fresh line)."""
    for bar in reversed(list(_open)):
        bar.close(completed=False)
