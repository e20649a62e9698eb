"""Backgrounds of the synthetic speaker: solid, gradients, soft noise and soft stripes.

Every pixel is a blend of the appearance's two background colours, so a background never
comes near a reserved colour (the sampler checks the whole blend segment).
"""

from __future__ import annotations

import cv2
import numpy as np

from cospeech.data.synth.appearance import Appearance

NOISE_GRID_CELLS = 5  # coarse random grid per image side, upsampled smoothly
STRIPE_COUNT_RANGE = (5, 12)  # stripes across the image width


def _blend_weights(appearance: Appearance, width: int, height: int) -> np.ndarray:
    """``[H, W]`` float32 in [0, 1]: 0 = first background colour, 1 = second."""
    kind = appearance.background_kind
    if kind == "solid":
        return np.zeros((height, width), np.float32)
    if kind == "vertical_gradient":
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        return np.broadcast_to(ramp, (height, width))
    if kind == "horizontal_gradient":
        ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
        return np.broadcast_to(ramp, (height, width))
    rng = np.random.default_rng(appearance.background_seed)
    if kind == "noise":
        grid = rng.random((NOISE_GRID_CELLS, NOISE_GRID_CELLS)).astype(np.float32)
        smooth = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        return np.clip(smooth, 0.0, 1.0)
    if kind == "stripes":
        stripes = rng.integers(*STRIPE_COUNT_RANGE, endpoint=True)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        x = np.arange(width, dtype=np.float32) / width
        wave = 0.5 + 0.5 * np.sin(2.0 * np.pi * stripes * x + phase)
        return np.broadcast_to(wave[None, :], (height, width))
    raise AssertionError(f"unhandled background kind {kind!r}")  # Appearance validates kinds


def make_background(appearance: Appearance, width: int, height: int) -> np.ndarray:
    """The appearance's background as uint8 RGB ``[H, W, 3]``."""
    weight = _blend_weights(appearance, width, height)[..., None]
    first = np.asarray(appearance.background_rgb, np.float32)
    second = np.asarray(appearance.background_second_rgb, np.float32)
    image = (1.0 - weight) * first + weight * second
    return np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
