"""Small vectorised signal helpers shared by the motion rules (times in seconds)."""

from __future__ import annotations

import numpy as np


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Centre time of every frame, ``(i + 0.5) / fps``, ``[T]`` float64 seconds."""
    return (np.arange(num_frames) + 0.5) / fps


def rotate(vectors: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotate ``[..., 2]`` vectors by ``angle`` (radians, broadcast over ``...``), image axes."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def direction(angle: np.ndarray | float) -> np.ndarray:
    """Unit vectors ``[..., 2]`` at ``angle`` radians (image axes: +x right, +y down)."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def raised_cosine_bump(t: np.ndarray, half_width: float) -> np.ndarray:
    """``cos^2`` bump: 1 at ``t = 0``, 0 for ``|t| >= half_width``; same shape as ``t``."""
    x = np.clip(np.abs(t) / half_width, 0.0, 1.0)
    return np.cos(0.5 * np.pi * x) ** 2


def smoothstep_window(
    t: np.ndarray, start: float, end: float, rise: float, fall: float
) -> np.ndarray:
    """1 on ``[start, end]``, raised-cosine ramps of ``rise`` seconds before and ``fall``
    seconds after, 0 elsewhere."""
    up = np.clip((t - (start - rise)) / rise, 0.0, 1.0)
    down = np.clip(((end + fall) - t) / fall, 0.0, 1.0)
    ramp = np.minimum(up, down)
    return 0.5 - 0.5 * np.cos(np.pi * ramp)


def smooth_noise(
    rng: np.random.Generator, t: np.ndarray, low_hz: float, high_hz: float, components: int = 3
) -> np.ndarray:
    """A smooth random wander with unit peak amplitude at most: a sum of ``components``
    sinusoids with frequencies in ``[low_hz, high_hz]`` and random phases. ``[T]``."""
    freqs = rng.uniform(low_hz, high_hz, size=components)
    phases = rng.uniform(0.0, 2 * np.pi, size=components)
    weights = rng.uniform(0.5, 1.0, size=components)
    waves = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])
    return (weights[:, None] * waves).sum(axis=0) / weights.sum()


def gaussian_smooth(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Smooth ``[T]`` with a Gaussian of ``sigma_frames`` (edge values repeated)."""
    if sigma_frames <= 0 or len(values) < 2:
        return values.astype(np.float64)
    radius = int(np.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values.astype(np.float64), radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")
