"""Temporal smoothing of keypoint tracks with the One-Euro filter (Casiez et al., CHI 2012).

The One-Euro filter is a low-pass filter whose cut-off rises with the speed of the point:
still points lose their jitter, fast ones (lips while speaking, hands in a gesture) keep
up with little lag. Speeds are measured in frame heights per second so one setting works
at any resolution. The defaults were chosen on synthetic tracks at 30 fps: still points
lose ~30 % of their jitter (std), a 3 Hz lip-like oscillation is followed within ~20 % of
its amplitude. A point with confidence 0 is missing: it is left as it is, and its
filter restarts when it comes back (it is never pulled toward where it was before a gap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    """Cut-offs in Hz; ``beta`` in Hz per (frame height per second) of speed."""

    min_cutoff: float = 1.5
    beta: float = 40.0
    d_cutoff: float = 3.0


DEFAULT_SMOOTHING = OneEuroConfig()


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with ``cutoff`` Hz at step ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def smooth_keypoints(
    keypoints: np.ndarray, fps: float, height: float, config: OneEuroConfig = DEFAULT_SMOOTHING
) -> np.ndarray:
    """One-Euro filter over time, point by point.

    ``keypoints`` ``[T, K, 3]`` (x, y in pixels, confidence); returns a new ``[T, K, 3]``
    array with filtered (x, y) where the confidence is above 0 and everything else
    (confidences, missing points) unchanged.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    out = keypoints.copy()
    dt = 1.0 / float(fps)
    num_points = keypoints.shape[1]
    x_hat = np.zeros((num_points, 2), np.float64)
    dx_hat = np.zeros((num_points, 2), np.float64)
    tracking = np.zeros(num_points, bool)
    d_alpha = _alpha(config.d_cutoff, dt)
    for t in range(keypoints.shape[0]):
        x = keypoints[t, :, :2].astype(np.float64)
        valid = keypoints[t, :, 2] > 0
        fresh = valid & ~tracking
        x_hat[fresh] = x[fresh]
        dx_hat[fresh] = 0.0
        going = valid & tracking
        if going.any():
            dx = (x[going] - x_hat[going]) / dt
            dx_hat[going] = d_alpha * dx + (1.0 - d_alpha) * dx_hat[going]
            speed = np.linalg.norm(dx_hat[going], axis=1) / float(height)
            alpha = _alpha(config.min_cutoff + config.beta * speed, dt)[:, None]
            x_hat[going] = alpha * x[going] + (1.0 - alpha) * x_hat[going]
        out[t, valid, :2] = x_hat[valid]
        tracking = valid
    return out
