"""One square crop per clip around the person, and the same transform for its keypoints.

The box is fixed for the whole clip (no jitter): the extent of the chosen keypoints over
all the clip's frames, grown by a margin on each side and made square. It is shifted
into the frame when it fits; along a side where it is larger than the frame it is
centred and the outside is padded black. Coordinates are continuous pixels (pixel
``(i, j)`` covers ``x in [j, j+1)``, ``y in [i, i+1)``), so a keypoint maps exactly as
``x' = (x - x0) * size / side``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cospeech.errors import InputError

# Smallest box side in source pixels (a box around a few points must still be a picture).
MIN_SIDE = 16


@dataclass(frozen=True)
class CropBox:
    """A square ``side`` x ``side`` window of the source frame at ``(x0, y0)`` (may stick out)."""

    x0: int
    y0: int
    side: int

    def crop(self, frame: np.ndarray, size: int) -> np.ndarray:
        """``[H, W, 3]`` uint8 -> the box resized to ``[size, size, 3]`` (black outside)."""
        height, width = frame.shape[:2]
        window = np.zeros((self.side, self.side, 3), np.uint8)
        x_a, y_a = max(self.x0, 0), max(self.y0, 0)
        x_b, y_b = min(self.x0 + self.side, width), min(self.y0 + self.side, height)
        if x_b > x_a and y_b > y_a:
            window[y_a - self.y0 : y_b - self.y0, x_a - self.x0 : x_b - self.x0] = frame[
                y_a:y_b, x_a:x_b
            ]
        if self.side == size:
            return window
        interpolation = cv2.INTER_AREA if size < self.side else cv2.INTER_LINEAR
        return cv2.resize(window, (size, size), interpolation=interpolation)

    def transform(self, keypoints: np.ndarray, size: int) -> np.ndarray:
        """``[..., 3]`` keypoints (x, y, confidence) into the ``size`` x ``size`` crop."""
        out = np.array(keypoints, dtype=np.float32, copy=True)
        zoom = size / self.side
        out[..., 0] = (out[..., 0] - self.x0) * zoom
        out[..., 1] = (out[..., 1] - self.y0) * zoom
        return out


def _place(center: float, side: int, length: int) -> int:
    """Start of a ``side`` window centred at ``center`` on an axis of ``length`` pixels."""
    if side <= length:
        return min(max(round(center - side / 2), 0), length - side)
    return (length - side) // 2


def clip_box(
    keypoints: np.ndarray,
    width: int,
    height: int,
    points: tuple[int, ...],
    margin: float,
    min_confidence: float,
) -> CropBox:
    """The crop of a clip: ``keypoints`` ``[T, 133, 3]``, ``points`` the indices whose
    extent (where confidence > ``min_confidence``) the box covers, grown by ``margin`` times
    the extent's longer side on each side."""
    selected = keypoints[:, list(points)]
    seen = selected[selected[..., 2] > min_confidence][:, :2]
    if len(seen) == 0:
        raise InputError("crop: no confident keypoint to place the box on")
    low, high = seen.min(axis=0), seen.max(axis=0)
    extent = float((high - low).max())
    side = max(MIN_SIDE, math.ceil(extent * (1 + 2 * margin)))
    center = (low + high) / 2
    return CropBox(
        x0=_place(float(center[0]), side, width),
        y0=_place(float(center[1]), side, height),
        side=side,
    )
