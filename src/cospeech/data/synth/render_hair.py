"""Hair behind the head (long hair, bun) and in front of it (cap and fringe), per style.

Shapes are polygons in the face frame (x across, y down, unit = jaw width, origin between
the jaw ends), so hair turns and scales with the head.
"""

from __future__ import annotations

import numpy as np

from cospeech.data.synth.frames import Frame
from cospeech.data.synth.palette import Palette
from cospeech.data.synth.shapes import fill_circle, fill_polygon, polyline

OUTLINE_WIDTH = 0.014
ARC_POINTS = 15
BUN_CENTRE = (0.0, -0.78)
BUN_RADIUS = 0.2
STRAND_WIDTH = 0.012


def _arc(half_width: float, height: float, start: float, stop: float) -> np.ndarray:
    """Points of an ellipse arc above the origin, angles from +x (image right) over the top."""
    theta = np.linspace(start, stop, ARC_POINTS)
    return np.stack([half_width * np.cos(theta), -height * np.sin(theta)], axis=-1)


def _polygon(*parts: object) -> np.ndarray:
    return np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in parts])


# Front caps: outer arc from the image right over the top to the image left, then the
# hairline back from left to right.
_SHORT_FRONT = _polygon(
    _arc(0.56, 0.77, -0.12, np.pi + 0.12),
    [(-0.5, 0.04), (-0.48, -0.2), (-0.4, -0.34), (-0.22, -0.4), (-0.02, -0.37),
     (0.2, -0.41), (0.38, -0.36), (0.47, -0.22), (0.5, 0.04)],
)  # fmt: skip
_LONG_FRONT = _polygon(
    _arc(0.6, 0.78, -0.35, np.pi + 0.35),
    [(-0.6, 0.55), (-0.56, 0.74), (-0.48, 0.72), (-0.5, 0.4), (-0.5, 0.1), (-0.47, -0.15),
     (-0.36, -0.34), (-0.16, -0.44), (0.0, -0.47), (0.16, -0.44), (0.36, -0.34),
     (0.47, -0.15), (0.5, 0.1), (0.5, 0.4), (0.48, 0.72), (0.56, 0.74), (0.6, 0.55)],
)  # fmt: skip
_BUN_FRONT = _polygon(
    _arc(0.54, 0.74, -0.08, np.pi + 0.08),
    [(-0.5, 0.02), (-0.46, -0.24), (-0.32, -0.42), (0.0, -0.5), (0.32, -0.42),
     (0.46, -0.24), (0.5, 0.02)],
)  # fmt: skip
_LONG_BACK = _polygon(
    _arc(0.6, 0.8, 0.0, np.pi),
    [(-0.66, 0.6), (-0.7, 1.3), (0.7, 1.3), (0.66, 0.6)],
)  # fmt: skip
FRONT_SHAPES = {"short": _SHORT_FRONT, "long": _LONG_FRONT, "bun": _BUN_FRONT}
# Strands: curves over the hair in its shadow colour, mirrored on the other side.
STRANDS = {
    "short": ((-0.15, -0.42), (-0.3, -0.58), (-0.48, -0.4)),
    "long": ((0.0, -0.5), (-0.25, -0.6), (-0.5, -0.35), (-0.55, -0.1), (-0.56, 0.3)),
    "bun": ((-0.36, -0.36), (-0.22, -0.58), (-0.07, -0.7)),
}
MIRROR_X = np.array([-1.0, 1.0])


def draw_back_hair(image: np.ndarray, face: Frame, palette: Palette, style: str) -> None:
    """Hair behind the head and torso: long hair down to the shoulders, or a bun on top."""
    width = OUTLINE_WIDTH * face.size
    if style == "long":
        back = face.to_image(_LONG_BACK)
        fill_polygon(image, back, palette.hair)
        polyline(image, back, palette.hair_outline, width, closed=True)
    elif style == "bun":
        centre = face.to_image(np.array(BUN_CENTRE))
        fill_circle(image, centre, BUN_RADIUS * face.size + width, palette.hair_outline)
        fill_circle(image, centre, BUN_RADIUS * face.size, palette.hair)


def draw_front_hair(image: np.ndarray, face: Frame, palette: Palette, style: str) -> None:
    """Hair over the skull and forehead (nothing for "bald")."""
    if style not in FRONT_SHAPES:
        return
    width = OUTLINE_WIDTH * face.size
    cap = face.to_image(FRONT_SHAPES[style])
    fill_polygon(image, cap, palette.hair)
    polyline(image, cap, palette.hair_outline, width, closed=True)
    strand = np.asarray(STRANDS[style], np.float64)
    for coords in (strand, strand * MIRROR_X):
        polyline(image, face.to_image(coords), palette.hair_shadow, STRAND_WIDTH * face.size)
