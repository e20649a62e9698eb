"""Fixed colours of the synthetic speaker renderer and the colours no appearance may use.

The mouth interior and the teeth are drawn in two reserved colours so that lip-sync can
later be measured on generated pixels by counting mouth-interior-coloured pixels. Every
sampled appearance keeps its colours, and every shade the renderer derives from them, at
least ``RESERVED_CLEARANCE`` (Euclidean RGB distance) away from both.
"""

from __future__ import annotations

import numpy as np

RGB = tuple[int, int, int]

# Reserved: used only inside an open mouth.
MOUTH_INTERIOR_RGB: RGB = (100, 0, 60)
TEETH_RGB: RGB = (236, 244, 255)
RESERVED_RGB: tuple[RGB, ...] = (MOUTH_INTERIOR_RGB, TEETH_RGB)
# Minimum RGB distance between any appearance colour (or shade of it) and a reserved colour.
RESERVED_CLEARANCE = 50.0

# Renderer constants shared by every appearance (checked against the reserved colours in tests).
EYE_WHITE_RGB: RGB = (226, 220, 210)
PUPIL_RGB: RGB = (22, 18, 20)
LASH_RGB: RGB = (40, 28, 26)

# Shades the renderer derives from appearance colours: colour * factor.
OUTLINE_SHADE = 0.62  # cartoon outlines of limbs, clothing, hair, hands
SHADOW_SHADE = 0.82  # neck, inner ear, nose shading
DARKEST_SHADE = min(OUTLINE_SHADE, SHADOW_SHADE)


def shade(colour: RGB, factor: float) -> RGB:
    """``colour`` scaled by ``factor`` (darker for factor < 1), rounded to integers."""
    return tuple(round(min(255.0, c * factor)) for c in colour)  # type: ignore[return-value]


def segment_clearance(a: RGB, b: RGB) -> float:
    """Smallest RGB distance from any blend of ``a`` and ``b`` to a reserved colour."""
    start = np.asarray(a, dtype=np.float64)
    direction = np.asarray(b, dtype=np.float64) - start
    length_sq = float(direction @ direction)
    clearance = np.inf
    for reserved in RESERVED_RGB:
        offset = np.asarray(reserved, dtype=np.float64) - start
        t = 0.0 if length_sq == 0.0 else float(np.clip(offset @ direction / length_sq, 0.0, 1.0))
        clearance = min(clearance, float(np.linalg.norm(offset - t * direction)))
    return clearance


def shades_clear(colour: RGB, darkest: float = DARKEST_SHADE) -> bool:
    """Whether ``colour`` and its shades down to ``colour * darkest`` (by default every shade
    the renderer draws) keep clear of the reserved colours."""
    return segment_clearance(shade(colour, darkest), colour) >= RESERVED_CLEARANCE
