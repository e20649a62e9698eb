"""Head and face from the 68 iBUG landmarks: skull, ears, eyes, eyebrows, nose and mouth.

Sizes are fractions of the jaw width (the face frame's unit). Each feature is drawn only
when all of its landmarks are visible.
"""

from __future__ import annotations

import numpy as np

from cospeech.data.synth.colours import (
    EYE_WHITE_RGB,
    LASH_RGB,
    MOUTH_INTERIOR_RGB,
    PUPIL_RGB,
    TEETH_RGB,
)
from cospeech.data.synth.frames import Frame
from cospeech.data.synth.palette import Palette
from cospeech.data.synth.shapes import (
    chain_capsules,
    fill_circle,
    fill_convex_many,
    fill_ellipse,
    fill_polygon,
    polyline,
    smooth_closed,
)
from cospeech.pose.schema import (
    FACE_INNER_LIPS,
    FACE_JAW,
    FACE_LEFT_BROW,
    FACE_LEFT_EYE,
    FACE_NOSE_BOTTOM,
    FACE_NOSE_BRIDGE,
    FACE_OUTER_LIPS,
    FACE_RIGHT_BROW,
    FACE_RIGHT_EYE,
    INNER_LIP_BOTTOM,
    INNER_LIP_TOP,
)

OUTLINE_WIDTH = 0.012
# Skull above the jaw ends: half an ellipse (frame units), slightly wider at the temples.
SKULL_HEIGHT = 0.64
TEMPLE_BULGE = 0.04
SKULL_POINTS = 17
# Ears: centre (across, down) on each side, semi-axes, inner-ear scale.
EAR_CENTRE = (0.51, 0.08)
EAR_AXES = (0.075, 0.14)
INNER_EAR_SCALE = 0.55
# Eyes: iris radius and pupil radius as fractions of the eye width.
IRIS_RADIUS = 0.21
IRIS_INNER = 0.85  # iris colour inside its darker rim
# Cartoon eyes: drawn this much wider and more open than the landmarks.
EYE_WIDTH_SCALE = 1.1
EYE_OPENING_SCALE = 1.5
EYE_SPLINE_SAMPLES = 3
PUPIL_RADIUS = 0.45  # of the iris radius
UPPER_LID_WIDTH = 0.018
LOWER_LID_WIDTH = 0.008
EYE_ROI_MARGIN = 2  # pixels around the eye polygon
# Eyebrows: radius at the inner and outer end.
BROW_INNER_RADIUS = 0.026
BROW_OUTER_RADIUS = 0.014
# Nose.
NOSE_LINE_WIDTH = 0.018
NOSTRIL_AXES = (0.028, 0.016)
BRIDGE_SHADE_OFFSET = 0.035  # shade line beside the bridge
# Mouth.
MOUTH_OPEN_MIN = 0.004  # inner-lip gap (frame units) below which the mouth is closed
MOUTH_LINE_WIDTH = 0.018
# Upper-teeth band: grows with the opening beyond TEETH_MIN_OPENING, up to TEETH_MAX_HEIGHT.
TEETH_MIN_OPENING = 0.03
TEETH_FRACTION = 0.5
TEETH_MAX_HEIGHT = 0.06
MOUTH_ROI_MARGIN = 2
LIP_SPLINE_SAMPLES = 3
# The inner lips run corner (60), upper lip (61-63), corner (64), lower lip (65-67).
_UPPER_INNER_END = 4 * LIP_SPLINE_SAMPLES + 1


def _skull_arc(face: Frame) -> np.ndarray:
    """``[SKULL_POINTS, 2]`` from the left jaw end over the top to the right jaw end."""
    theta = np.linspace(0.0, np.pi, SKULL_POINTS)[1:-1]
    half_width = 0.5 + TEMPLE_BULGE * np.sin(theta)
    coords = np.stack([half_width * np.cos(theta), -SKULL_HEIGHT * np.sin(theta)], axis=-1)
    return face.to_image(coords)


def draw_ears(image: np.ndarray, face: Frame, palette: Palette) -> None:
    """Both ears (drawn before the head, which covers their inner side)."""
    for side in (-1, 1):
        centre = face.to_image(np.array([side * EAR_CENTRE[0], EAR_CENTRE[1]]))
        axes = (EAR_AXES[0] * face.size, EAR_AXES[1] * face.size)
        rim = OUTLINE_WIDTH * face.size
        fill_ellipse(
            image, centre, (axes[0] + rim, axes[1] + rim), face.angle_deg, palette.skin_outline
        )
        fill_ellipse(image, centre, axes, face.angle_deg, palette.skin)
        inner = (axes[0] * INNER_EAR_SCALE, axes[1] * INNER_EAR_SCALE)
        fill_ellipse(image, centre, inner, face.angle_deg, palette.skin_shadow)


def draw_head(image: np.ndarray, points: np.ndarray, face: Frame, palette: Palette) -> None:
    """Skull: the jaw contour closed by an elliptic forehead/skull arc, skin-filled."""
    outline = np.concatenate([points[list(FACE_JAW)], _skull_arc(face)])
    fill_polygon(image, outline, palette.skin)
    polyline(image, outline, palette.skin_outline, OUTLINE_WIDTH * face.size, closed=True)


def _blend_roi(image: np.ndarray, origin: np.ndarray, mask: np.ndarray, layer: np.ndarray) -> None:
    """Blend ``layer`` into ``image`` at integer ``origin`` with uint8 coverage ``mask``."""
    x0, y0 = int(origin[0]), int(origin[1])
    h, w = mask.shape
    roi = image[y0 : y0 + h, x0 : x0 + w]
    alpha = mask[..., None].astype(np.float32) * (1.0 / 255.0)
    roi[...] = (roi * (1.0 - alpha) + layer * alpha + 0.5).astype(np.uint8)


def _roi_box(
    image: np.ndarray, polygon: np.ndarray, margin: int
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Integer top-left corner and (width, height) of ``polygon``'s box inside the image."""
    height, width = image.shape[:2]
    low = np.maximum(np.floor(polygon.min(axis=0)) - margin, 0).astype(int)
    high = np.minimum(np.ceil(polygon.max(axis=0)) + margin, [width, height]).astype(int)
    size = high - low
    if (size <= 0).any():
        return None
    return low, (int(size[0]), int(size[1]))


def _coverage(polygon: np.ndarray, origin: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``[h, w]`` anti-aliased coverage of ``polygon`` in the box at ``origin``."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    fill_polygon(mask, polygon - origin, 255)  # type: ignore[arg-type]
    return mask


def _draw_eye(image: np.ndarray, eye: np.ndarray, face: Frame, palette: Palette) -> None:
    """Eye whites and iris clipped to the (smoothed, slightly widened) eye outline, then the
    lids. Collapsed landmarks (a blink) leave no white, only the lid line."""
    corner_mid = (eye[0] + eye[3]) / 2
    offsets = eye - corner_mid
    opened = (
        corner_mid
        + EYE_WIDTH_SCALE * np.outer(offsets @ face.across, face.across)
        + EYE_OPENING_SCALE * np.outer(offsets @ face.down, face.down)
    )
    outline = smooth_closed(opened, EYE_SPLINE_SAMPLES)
    box = _roi_box(image, outline, EYE_ROI_MARGIN)
    eye_width = float(np.linalg.norm(eye[3] - eye[0]))
    if box is not None:
        origin, size = box
        layer = np.empty((size[1], size[0], 3), np.uint8)
        layer[...] = EYE_WHITE_RGB
        centre = eye.mean(axis=0) - origin
        iris_radius = IRIS_RADIUS * eye_width
        fill_circle(layer, centre, iris_radius, palette.iris_rim)
        fill_circle(layer, centre, iris_radius * IRIS_INNER, palette.iris)
        fill_circle(layer, centre, iris_radius * PUPIL_RADIUS, PUPIL_RGB)
        _blend_roi(image, origin, _coverage(outline, origin, size), layer)
    upper_end = 3 * EYE_SPLINE_SAMPLES + 1  # outline from corner 0 over the upper lid to 3
    lower = np.concatenate([outline[upper_end - 1 :], outline[:1]])
    polyline(image, lower, palette.skin_outline, LOWER_LID_WIDTH * face.size)
    polyline(image, outline[:upper_end], LASH_RGB, UPPER_LID_WIDTH * face.size)


def draw_eyes(image: np.ndarray, points: np.ndarray, visible: np.ndarray, face: Frame,
              palette: Palette) -> None:  # fmt: skip
    """Both eyes; a closed eye (collapsed landmarks) shows only its lid line."""
    for eye in (FACE_RIGHT_EYE, FACE_LEFT_EYE):
        if visible[list(eye)].all():
            _draw_eye(image, points[list(eye)], face, palette)


def draw_brows(image: np.ndarray, points: np.ndarray, visible: np.ndarray, face: Frame,
               palette: Palette) -> None:  # fmt: skip
    """Eyebrows as tapered strokes, thick at the inner end (next to the nose)."""
    taper = np.linspace(BROW_OUTER_RADIUS, BROW_INNER_RADIUS, len(FACE_RIGHT_BROW)) * face.size
    for brow, radii in ((FACE_RIGHT_BROW, taper), (FACE_LEFT_BROW, taper[::-1])):
        if visible[list(brow)].all():
            fill_convex_many(image, chain_capsules(points[list(brow)], radii), palette.eyebrow)


def draw_nose(image: np.ndarray, points: np.ndarray, visible: np.ndarray, face: Frame,
              palette: Palette) -> None:  # fmt: skip
    """Shade beside the bridge, the bottom curve and nostrils."""
    nose = FACE_NOSE_BRIDGE + FACE_NOSE_BOTTOM
    if not visible[list(nose)].all():
        return
    bridge = points[list(FACE_NOSE_BRIDGE)][2:] + BRIDGE_SHADE_OFFSET * face.size * face.across
    polyline(image, bridge, palette.skin_shadow, NOSE_LINE_WIDTH * face.size)
    bottom = points[list(FACE_NOSE_BOTTOM)]
    polyline(image, bottom, palette.skin_outline, NOSE_LINE_WIDTH * face.size)
    axes = (NOSTRIL_AXES[0] * face.size, NOSTRIL_AXES[1] * face.size)
    for nostril in (bottom[1], bottom[3]):
        fill_ellipse(image, nostril, axes, face.angle_deg, palette.skin_outline)


def _mouth_interior(image: np.ndarray, inner: np.ndarray, opening: float, face: Frame) -> None:
    """Dark interior inside the inner lips (smoothed ``[8 * LIP_SPLINE_SAMPLES, 2]``) with the
    upper teeth band along the upper lip."""
    box = _roi_box(image, inner, MOUTH_ROI_MARGIN)
    if box is None:
        return
    origin, size = box
    teeth_height = TEETH_FRACTION * max(opening - TEETH_MIN_OPENING * face.size, 0.0)
    teeth_height = min(teeth_height, TEETH_MAX_HEIGHT * face.size)
    layer = np.empty((size[1], size[0], 3), np.uint8)
    layer[...] = MOUTH_INTERIOR_RGB
    if teeth_height > 0.0:
        upper_lip = inner[:_UPPER_INNER_END]
        teeth = np.concatenate([upper_lip, upper_lip[::-1] + teeth_height * face.down])
        fill_polygon(layer, teeth - origin, TEETH_RGB)
    _blend_roi(image, origin, _coverage(inner, origin, size), layer)


def draw_mouth(image: np.ndarray, points: np.ndarray, visible: np.ndarray, face: Frame,
               palette: Palette) -> None:  # fmt: skip
    """Lips in lip colour; open: interior + teeth; closed: the line between the lips."""
    if not visible[list(FACE_OUTER_LIPS + FACE_INNER_LIPS)].all():
        return
    fill_polygon(
        image, smooth_closed(points[list(FACE_OUTER_LIPS)], LIP_SPLINE_SAMPLES), palette.lip
    )
    inner = smooth_closed(points[list(FACE_INNER_LIPS)], LIP_SPLINE_SAMPLES)
    opening = float(np.linalg.norm(points[INNER_LIP_BOTTOM] - points[INNER_LIP_TOP]))
    if opening >= MOUTH_OPEN_MIN * face.size:
        _mouth_interior(image, inner, opening, face)
    else:
        polyline(image, inner[:_UPPER_INNER_END], palette.lip_line, MOUTH_LINE_WIDTH * face.size)
