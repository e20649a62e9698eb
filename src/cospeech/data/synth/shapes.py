"""Anti-aliased drawing primitives on uint8 RGB images (cv2, sub-pixel fixed point).

Points are float pixel coordinates ``[N, 2]`` (x, y); they are drawn with
``SHIFT_BITS`` fractional bits so that thin features move smoothly between frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from cospeech.data.synth.colours import RGB

SHIFT_BITS = 4
_FIXED_SCALE = float(1 << SHIFT_BITS)
ARC_POINTS = 7  # points per rounded capsule end


def to_fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates ``[..., 2]`` -> int32 fixed point for cv2 with ``SHIFT_BITS``."""
    return np.rint(np.asarray(points) * _FIXED_SCALE).astype(np.int32)


def fill_polygon(image: np.ndarray, points: np.ndarray, colour: RGB) -> None:
    """Fill one (possibly concave) polygon ``[N, 2]``."""
    cv2.fillPoly(image, [to_fixed(points)], colour, cv2.LINE_AA, SHIFT_BITS)


def fill_convex(image: np.ndarray, points: np.ndarray, colour: RGB) -> None:
    """Fill one convex polygon ``[N, 2]``."""
    cv2.fillConvexPoly(image, to_fixed(points), colour, cv2.LINE_AA, SHIFT_BITS)


def fill_convex_many(image: np.ndarray, polygons: np.ndarray, colour: RGB) -> None:
    """Fill convex polygons ``[S, N, 2]`` one after the other (overlaps stay filled)."""
    draw_fixed_convex(image, to_fixed(polygons), colour)


def draw_fixed_convex(image: np.ndarray, polygons: np.ndarray, colour: RGB) -> None:
    """Fill convex polygons already in fixed point (int32 ``[S, N, 2]``, see ``to_fixed``)."""
    for polygon in polygons:
        cv2.fillConvexPoly(image, polygon, colour, cv2.LINE_AA, SHIFT_BITS)


def polyline(
    image: np.ndarray, points: np.ndarray, colour: RGB, thickness: float, closed: bool = False
) -> None:
    """Anti-aliased polyline through ``[N, 2]`` points, ``thickness`` pixels (at least 1)."""
    width = max(1, round(thickness))
    cv2.polylines(image, [to_fixed(points)], closed, colour, width, cv2.LINE_AA, SHIFT_BITS)


def fill_circle(image: np.ndarray, centre: np.ndarray, radius: float, colour: RGB) -> None:
    """Filled anti-aliased disc."""
    cx, cy = to_fixed(centre)
    cv2.circle(
        image, (int(cx), int(cy)), round(radius * _FIXED_SCALE), colour, -1,
        cv2.LINE_AA, SHIFT_BITS,
    )  # fmt: skip


def fill_ellipse(
    image: np.ndarray, centre: np.ndarray, axes: tuple[float, float], angle_deg: float, colour: RGB
) -> None:
    """Filled anti-aliased ellipse with semi-axes ``axes`` rotated by ``angle_deg``."""
    cx, cy = to_fixed(centre)
    ax, ay = (round(a * _FIXED_SCALE) for a in axes)
    cv2.ellipse(
        image, (int(cx), int(cy)), (max(ax, 1), max(ay, 1)), float(angle_deg), 0.0, 360.0,
        colour, -1, cv2.LINE_AA, SHIFT_BITS,
    )  # fmt: skip


_ARC_STEPS = np.linspace(0.0, 1.0, ARC_POINTS)


@lru_cache(maxsize=16)
def closed_spline_weights(count: int, samples: int) -> np.ndarray:
    """``[count * samples, count]`` weights of a closed uniform Catmull-Rom spline.

    ``weights @ points`` (points ``[count, 2]``) gives ``samples`` points per segment,
    starting at each control point: row ``i * samples`` is control point ``i``.
    """
    weights = np.zeros((count * samples, count))
    for segment in range(count):
        for step in range(samples):
            t = step / samples
            basis = 0.5 * np.array(
                [
                    -(t**3) + 2 * t**2 - t,
                    3 * t**3 - 5 * t**2 + 2,
                    -3 * t**3 + 4 * t**2 + t,
                    t**3 - t**2,
                ]
            )
            for offset, weight in zip((-1, 0, 1, 2), basis, strict=True):
                weights[segment * samples + step, (segment + offset) % count] += weight
    weights.setflags(write=False)
    return weights


def smooth_closed(points: np.ndarray, samples: int) -> np.ndarray:
    """Closed polygon ``[N, 2]`` -> smooth closed curve ``[N * samples, 2]`` through it."""
    return closed_spline_weights(len(points), samples) @ points


def capsules(
    start: np.ndarray, end: np.ndarray, start_radius: np.ndarray, end_radius: np.ndarray
) -> np.ndarray:
    """Tapered capsules (convex hull of two discs) as convex polygons.

    ``start``, ``end``: ``[S, 2]``; radii ``[S]`` (or scalars). Returns
    ``[S, 2 * ARC_POINTS, 2]``: the arc round ``end``, then the arc round ``start``.
    """
    start = np.asarray(start, np.float64).reshape(-1, 2)
    end = np.asarray(end, np.float64).reshape(-1, 2)
    count = len(start)
    r0 = (np.zeros(count) + start_radius)[:, None]
    r1 = (np.zeros(count) + end_radius)[:, None]
    delta = end - start
    length = np.maximum(np.hypot(delta[:, 0], delta[:, 1]), 1e-6)[:, None]
    heading = np.arctan2(delta[:, 1], delta[:, 0])[:, None]
    # Tangent points sit at heading +- (pi/2 - tilt) on both discs, tilt from the radius change.
    half = np.pi / 2 - np.arcsin(np.clip((r0 - r1) / length, -0.99, 0.99))
    angles = np.concatenate(
        [
            heading - half + _ARC_STEPS * 2 * half,
            heading + half + _ARC_STEPS * (2 * np.pi - 2 * half),
        ],
        axis=1,
    )  # [S, 2A]: front arc round ``end``, back arc round ``start``
    centres = np.concatenate(
        [np.repeat(end[:, None], ARC_POINTS, 1), np.repeat(start[:, None], ARC_POINTS, 1)], axis=1
    )
    radii = np.concatenate([np.repeat(r1, ARC_POINTS, 1), np.repeat(r0, ARC_POINTS, 1)], axis=1)
    polygons = np.empty((count, 2 * ARC_POINTS, 2))
    polygons[..., 0] = centres[..., 0] + radii * np.cos(angles)
    polygons[..., 1] = centres[..., 1] + radii * np.sin(angles)
    return polygons


def chain_capsules(points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Capsules along a chain of points ``[K, 2]`` with radii ``[K]`` -> ``[K-1, 2A, 2]``."""
    points = np.asarray(points, np.float64)
    radii = np.asarray(radii, np.float64)
    return capsules(points[:-1], points[1:], radii[:-1], radii[1:])


@dataclass(frozen=True)
class CapsuleLayer:
    """Capsules ``start -> end`` (``[S, 2]`` or ``[2]``; radii ``[S]`` or scalars) drawn as an
    ``outline`` rim, then filled with ``fill``."""

    start: np.ndarray
    end: np.ndarray
    start_radius: float | np.ndarray
    end_radius: float | np.ndarray
    fill: RGB
    outline: RGB


def draw_capsule_layers(
    image: np.ndarray, layers: Sequence[CapsuleLayer], outline_width: float
) -> None:
    """Layers back to front, each as its rim then its fill; geometry computed in one batch."""
    starts, ends, start_radii, end_radii, counts = [], [], [], [], []
    for layer in layers:
        start = np.asarray(layer.start, np.float64).reshape(-1, 2)
        count = len(start)
        r0 = np.broadcast_to(np.asarray(layer.start_radius, np.float64), (count,))
        r1 = np.broadcast_to(np.asarray(layer.end_radius, np.float64), (count,))
        starts += [start, start]
        ends += [np.asarray(layer.end, np.float64).reshape(-1, 2)] * 2
        start_radii += [r0 + outline_width, r0]
        end_radii += [r1 + outline_width, r1]
        counts.append(count)
    polygons = to_fixed(
        capsules(
            np.concatenate(starts), np.concatenate(ends),
            np.concatenate(start_radii), np.concatenate(end_radii),
        )
    )  # fmt: skip
    first = 0
    for layer, count in zip(layers, counts, strict=True):
        draw_fixed_convex(image, polygons[first : first + count], layer.outline)
        draw_fixed_convex(image, polygons[first + count : first + 2 * count], layer.fill)
        first += 2 * count
