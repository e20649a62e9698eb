"""Neck, clothed torso (with the clothing style's neckline and details) and arms with sleeves.

Sizes are fractions of the shoulder width (the body frame's unit).
"""

from __future__ import annotations

import numpy as np

from cospeech.data.synth.frames import Frame
from cospeech.data.synth.palette import Palette
from cospeech.data.synth.shapes import (
    CapsuleLayer,
    draw_capsule_layers,
    fill_circle,
    fill_convex,
    fill_polygon,
    polyline,
)
from cospeech.pose.schema import (
    LEFT_ELBOW,
    LEFT_HIP,
    LEFT_SHOULDER,
    LEFT_WRIST,
    RIGHT_ELBOW,
    RIGHT_HIP,
    RIGHT_SHOULDER,
    RIGHT_WRIST,
)

OUTLINE_WIDTH = 0.012
# Torso outline relative to each shoulder/hip, (across outward, down); the person's right
# side mirrors the left.
NECK_SIDE = (0.16, -0.07)  # from the shoulder midpoint
# Shoulder: an arc round the joint as round as the sleeve, from the top (slightly inward,
# degrees from outward) down to outward.
SHOULDER_ARC_DEGREES = (105.0, 0.0)
SHOULDER_ARC_POINTS = 5
ARMPIT = (0.07, 0.38)
WAIST = (0.09, 0.0)  # from the hip
HEM_DROP = 0.6  # clothing continues this far below the hips (usually off-frame)
MISSING_HIP_DROP = 1.25  # hip below the shoulder when the hip keypoint is missing
MISSING_HIP_INSET = 0.08
NECKLINE_POINTS = 9
NECKLINE_DEPTH = {"tshirt": 0.1, "collared_shirt": 0.24, "sweater": 0.06}
NECKLINE_TRIM_WIDTH = {"tshirt": 0.03, "sweater": 0.065}
# Collar flap of a shirt: (across from the centre, down), from neck side over tip to the V.
COLLAR_FLAP = ((0.17, -0.08), (0.22, 0.12), (0.03, 0.22))
BUTTON_SPACING = 0.18
BUTTON_RADIUS = 0.016
NECK_HALF_WIDTH = 0.3  # in face widths
NECK_TOP = (0.0, 0.35)  # in the face frame: under the jaw
# Arms.
UPPER_ARM_RADIUS = 0.095
ELBOW_RADIUS = 0.075
WRIST_RADIUS = 0.055
SLEEVE_EXTRA = 0.02  # sleeve radius over the arm
SHORT_SLEEVE_LENGTH = 0.55  # fraction of the upper arm
LONG_SLEEVE_LENGTH = 0.88  # fraction of the forearm
CUFF_LENGTH = 0.12  # fraction of the forearm
MIN_SEGMENT = 1e-3  # pixels


def _side_point(
    frame: Frame, anchor: np.ndarray, offset: tuple[float, float], side: int
) -> np.ndarray:
    """``anchor`` + offset in the body frame, ``side`` = +1 (left) or -1 (right) mirrors x."""
    return anchor + frame.size * (side * offset[0] * frame.across + offset[1] * frame.down)


def _hips(points: np.ndarray, visible: np.ndarray, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """(right hip, left hip), estimated below the shoulders where missing."""
    hips = []
    for hip, shoulder, side in ((RIGHT_HIP, RIGHT_SHOULDER, -1), (LEFT_HIP, LEFT_SHOULDER, 1)):
        if visible[hip]:
            hips.append(points[hip])
        else:
            hips.append(
                _side_point(frame, points[shoulder], (-MISSING_HIP_INSET, MISSING_HIP_DROP), side)
            )
    return hips[0], hips[1]


def _neckline(frame: Frame, style: str) -> np.ndarray:
    """``[NECKLINE_POINTS, 2]`` from the left neck side down and across to the right one."""
    left = _side_point(frame, frame.origin, NECK_SIDE, 1)
    right = _side_point(frame, frame.origin, NECK_SIDE, -1)
    t = np.linspace(0.0, 1.0, NECKLINE_POINTS)[:, None]
    depth = NECKLINE_DEPTH[style] * frame.size
    v_shape = style == "collared_shirt"
    dip = 1.0 - np.abs(2.0 * t - 1.0) if v_shape else np.sin(np.pi * t)
    return left + (right - left) * t + dip * depth * frame.down


def draw_neck(image: np.ndarray, body: Frame, face: Frame, palette: Palette) -> None:
    """Neck from between the shoulders up under the jaw, in shadowed skin."""
    top = face.to_image(np.array(NECK_TOP))
    radius = NECK_HALF_WIDTH * face.size
    neck = CapsuleLayer(body.origin, top, radius, radius, palette.skin_shadow, palette.skin_outline)
    draw_capsule_layers(image, [neck], OUTLINE_WIDTH * body.size)


def draw_torso(
    image: np.ndarray, points: np.ndarray, visible: np.ndarray, frame: Frame, palette: Palette,
    style: str,
) -> None:  # fmt: skip
    """Clothed torso from shoulders (required) and hips (estimated when missing)."""
    right_hip, left_hip = _hips(points, visible, frame)
    hem = HEM_DROP * frame.size * frame.down
    theta = np.radians(np.linspace(*SHOULDER_ARC_DEGREES, SHOULDER_ARC_POINTS))
    shoulder_radius = UPPER_ARM_RADIUS + SLEEVE_EXTRA
    shoulder_arc = shoulder_radius * np.stack([np.cos(theta), -np.sin(theta)], axis=-1)
    sides = []
    for shoulder, hip, side in (
        (points[LEFT_SHOULDER], left_hip, 1),
        (points[RIGHT_SHOULDER], right_hip, -1),
    ):
        top_down = [_side_point(frame, shoulder, tuple(p), side) for p in shoulder_arc]
        top_down += [
            _side_point(frame, shoulder, ARMPIT, side),
            _side_point(frame, hip, WAIST, side),
            _side_point(frame, hip, WAIST, side) + hem,
        ]
        sides.append(np.array(top_down))
    left_side, right_side = sides
    neckline = _neckline(frame, style)
    # Left side bottom -> top, neckline left -> right, right side top -> bottom.
    polygon = np.concatenate([left_side[::-1], neckline, right_side])
    width = OUTLINE_WIDTH * frame.size
    fill_polygon(image, polygon, palette.clothing)
    polyline(image, polygon, palette.clothing_outline, width, closed=True)
    _draw_clothing_details(image, frame, neckline, (right_hip, left_hip), palette, style)


def _draw_clothing_details(
    image: np.ndarray, frame: Frame, neckline: np.ndarray,
    hips: tuple[np.ndarray, np.ndarray], palette: Palette, style: str,
) -> None:  # fmt: skip
    """Neckline trim (t-shirt, sweater); collar flaps, placket and buttons (collared shirt)."""
    width = OUTLINE_WIDTH * frame.size
    if style in NECKLINE_TRIM_WIDTH:
        polyline(image, neckline, palette.trim, NECKLINE_TRIM_WIDTH[style] * frame.size)
    if style != "collared_shirt":
        return
    v_bottom = neckline[len(neckline) // 2]
    hem_centre = (hips[0] + hips[1]) / 2 + HEM_DROP * frame.size * frame.down
    polyline(image, np.stack([v_bottom, hem_centre]), palette.clothing_outline, width)
    length = float(np.linalg.norm(hem_centre - v_bottom))
    for step in np.arange(BUTTON_SPACING, length / frame.size, BUTTON_SPACING):
        centre = v_bottom + step * frame.size * frame.down
        fill_circle(image, centre, BUTTON_RADIUS * frame.size, palette.trim)
    for side in (-1, 1):
        flap = np.array([_side_point(frame, frame.origin, p, side) for p in COLLAR_FLAP])
        fill_convex(image, flap, palette.trim)
        polyline(image, flap, palette.trim_outline, width, closed=True)


def _arm_joints(side: int) -> tuple[int, int, int]:
    """(shoulder, elbow, wrist) keypoint indices of the left (+1) or right (-1) arm."""
    if side == 1:
        return LEFT_SHOULDER, LEFT_ELBOW, LEFT_WRIST
    return RIGHT_SHOULDER, RIGHT_ELBOW, RIGHT_WRIST


def elbow_inward(points: np.ndarray, frame: Frame, side: int) -> bool:
    """Whether the elbow of arm ``side`` (+1 left, -1 right) lies nearer the body's midline
    than its shoulder (the arm reaches across the body)."""
    shoulder, elbow, _ = _arm_joints(side)
    return bool(side * (points[elbow] - points[shoulder]) @ frame.across < 0.0)


def draw_upper_arm(
    image: np.ndarray, points: np.ndarray, visible: np.ndarray, frame: Frame, palette: Palette,
    style: str, side: int,
) -> None:  # fmt: skip
    """Upper arm (``side`` +1 = left, -1 = right): skin, then the sleeve over it."""
    shoulder, elbow, _ = _arm_joints(side)
    if not visible[[shoulder, elbow]].all():
        return
    s, e = points[shoulder], points[elbow]
    size = frame.size
    extra = SLEEVE_EXTRA * size
    if style == "tshirt":
        sleeve_end, end_radius = s + SHORT_SLEEVE_LENGTH * (e - s), UPPER_ARM_RADIUS * size
    else:
        sleeve_end, end_radius = e, ELBOW_RADIUS * size
    layers = [
        CapsuleLayer(
            s, e, UPPER_ARM_RADIUS * size, ELBOW_RADIUS * size, palette.skin, palette.skin_outline
        ),
        CapsuleLayer(
            s, sleeve_end, UPPER_ARM_RADIUS * size + extra, end_radius + extra, palette.clothing,
            palette.clothing_outline,
        ),
    ]  # fmt: skip
    draw_capsule_layers(image, layers, OUTLINE_WIDTH * size)


def draw_forearm(
    image: np.ndarray, points: np.ndarray, visible: np.ndarray, frame: Frame, palette: Palette,
    style: str, side: int,
) -> None:  # fmt: skip
    """Forearm (``side`` +1 = left, -1 = right), with a long sleeve and cuff unless the
    clothing is a t-shirt; drawn after the torso (forearms gesture in front of it)."""
    _, elbow, wrist = _arm_joints(side)
    if not visible[[elbow, wrist]].all():
        return
    e, w = points[elbow], points[wrist]
    size, width = frame.size, OUTLINE_WIDTH * frame.size
    layers = [
        CapsuleLayer(
            e, w, ELBOW_RADIUS * size, WRIST_RADIUS * size, palette.skin, palette.skin_outline
        )
    ]
    long_sleeve = style != "tshirt"
    extra = SLEEVE_EXTRA * size
    end_radius = (ELBOW_RADIUS + LONG_SLEEVE_LENGTH * (WRIST_RADIUS - ELBOW_RADIUS)) * size
    if long_sleeve:
        sleeve_end = e + LONG_SLEEVE_LENGTH * (w - e)
        layers.append(
            CapsuleLayer(
                e, sleeve_end, ELBOW_RADIUS * size + extra, end_radius + extra, palette.clothing,
                palette.clothing_outline,
            )
        )  # fmt: skip
    draw_capsule_layers(image, layers, width)
    if long_sleeve:
        _draw_cuff(image, e, w, end_radius + extra, palette, width)


def _draw_cuff(
    image: np.ndarray, elbow: np.ndarray, wrist: np.ndarray, half_width: float,
    palette: Palette, outline_width: float,
) -> None:  # fmt: skip
    """A band in the trim colour across the end of a long sleeve."""
    forearm = wrist - elbow
    length = float(np.hypot(*forearm))
    if length < MIN_SEGMENT:
        return
    end = elbow + LONG_SLEEVE_LENGTH * forearm
    start = end - CUFF_LENGTH * forearm
    normal = np.array([-forearm[1], forearm[0]]) / length * half_width
    band = np.stack([start - normal, end - normal, end + normal, start + normal])
    fill_convex(image, band, palette.trim)
    polyline(image, band, palette.trim_outline, outline_width, closed=True)
