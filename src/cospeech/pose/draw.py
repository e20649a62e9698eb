"""Pose maps: whole-body keypoints drawn DWPose-style, the video model's pose input.

The look follows DWPose (itself OpenPose's colours), so pose encoders trained on DWPose
renderings see what they expect:

* **Body** in the 18-point OpenPose layout (COCO-17 plus a *neck* at the middle of the
  shoulders, present only when both shoulders are). 17 limbs, each a filled ellipse over
  the bone in its own colour from :data:`BODY_COLORS` dimmed to 60 %
  (:data:`LIMB_COLORS`), then the 18 joints as discs in full :data:`BODY_COLORS`. Legs
  (hips, knees, ankles) are drawn when present; the six foot keypoints (17-22) are not.
* **Hands**: 20 bones per hand, bone ``i`` in HSV hue ``i / 20`` at full saturation and
  value (:data:`HAND_BONE_COLORS`), the joints as blue discs (:data:`HAND_POINT_COLOR`).
* **Face**: the 68 landmarks as small white dots (:data:`FACE_POINT_COLOR`).

Drawn in that order, anti-aliased (``cv2.LINE_AA``, sub-pixel positions), on a black
canvas unless one is given. Sizes scale with ``min(H, W) / 512`` (DWPose draws at 512):
limb half-width 4, body joint radius 4, hand bone thickness 2, hand joint radius 4, face
dot radius 3, all times that scale (at least 1 pixel; line thickness rounded). Images
are RGB ``uint8 [H, W, 3]``. A keypoint is drawn when its confidence is >=
``min_confidence`` (and > 0); a bone when both ends are. Coordinates are continuous
pixels: pixel ``(i, j)`` covers ``x in [j, j+1)``, ``y in [i, i+1)``. Deterministic:
the same keypoints give the same bytes.
"""

from __future__ import annotations

import colorsys
import itertools
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema as s
from cospeech.pose.sequence import PoseSequence

NECK = -1
"""Stand-in index for the neck in :data:`OPENPOSE_KEYPOINTS` (midpoint of the shoulders)."""

OPENPOSE_KEYPOINTS = (
    s.NOSE, NECK, s.RIGHT_SHOULDER, 8, 10, s.LEFT_SHOULDER, 7, 9,
    s.RIGHT_HIP, 14, 16, s.LEFT_HIP, 13, 15, s.RIGHT_EYE, s.LEFT_EYE, s.RIGHT_EAR, s.LEFT_EAR,
)  # fmt: skip
"""The OpenPose-18 body layout as COCO-WholeBody indices (``NECK`` for the neck)."""

BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
"""The 17 limbs DWPose draws, as pairs of indices into :data:`OPENPOSE_KEYPOINTS`."""

BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
"""RGB colour of OpenPose joint ``i``; limb ``i`` uses ``BODY_COLORS[i]`` dimmed."""

LIMB_COLORS = tuple(tuple(int(c * 0.6) for c in BODY_COLORS[i]) for i in range(len(BODY_LIMBS)))
"""RGB colour a limb is filled with: 60 % of its :data:`BODY_COLORS` entry (DWPose)."""

HAND_BONES = tuple((a - s.LEFT_HAND[0], b - s.LEFT_HAND[0]) for a, b in s.hand_edges(s.LEFT_HAND))
"""The 20 bones of a hand as pairs of indices 0-20 into the hand's own 21 points."""

HAND_BONE_COLORS = tuple(
    tuple(int(v * 255) for v in colorsys.hsv_to_rgb(i / len(HAND_BONES), 1.0, 1.0))
    for i in range(len(HAND_BONES))
)
"""RGB colour of hand bone ``i`` (the same for both hands)."""

HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)

_SHIFT = 4  # sub-pixel bits for OpenCV's drawing calls
_ONE = 1 << _SHIFT
_ELLIPSE_STEPS = 24
_COS = np.cos(np.linspace(0, 2 * np.pi, _ELLIPSE_STEPS, endpoint=False))
_SIN = np.sin(np.linspace(0, 2 * np.pi, _ELLIPSE_STEPS, endpoint=False))
_BODY_IDX = np.array([max(i, 0) for i in OPENPOSE_KEYPOINTS])
_LIMB_A = np.array([a for a, _ in BODY_LIMBS])
_LIMB_B = np.array([b for _, b in BODY_LIMBS])
_HAND_A = np.array([a for a, _ in HAND_BONES])
_HAND_B = np.array([b for _, b in HAND_BONES])
_HANDS = (np.array(s.LEFT_HAND), np.array(s.RIGHT_HAND))
_FACE = np.array(s.FACE)
_LIMIT = 1e6  # keeps far-off points inside int32 after the sub-pixel shift


class _Sizes:
    """Pixel sizes for one image size (sub-pixel units where OpenCV accepts them)."""

    def __init__(self, width: int, height: int) -> None:
        scale = min(width, height) / 512.0
        self.stick = max(1.0, 4.0 * scale)  # limb ellipse half-width, pixels
        self.joint = round(max(1.0, 4.0 * scale) * _ONE)
        self.hand_line = max(1, round(2.0 * scale))
        self.hand_joint = round(max(1.0, 4.0 * scale) * _ONE)
        self.face_dot = round(max(1.0, 3.0 * scale) * _ONE)


def draw_pose(
    keypoints: np.ndarray,
    width: int,
    height: int,
    canvas: np.ndarray | None = None,
    min_confidence: float = 0.3,
) -> np.ndarray:
    """Draw one frame's keypoints ``[133, 3]`` (x, y pixels, confidence) as an RGB pose map
    ``uint8 [height, width, 3]``, on a copy of ``canvas`` (``[H, W, 3]`` uint8) or black."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"draw_pose: image size must be positive, got {width}x{height}")
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (s.NUM_KEYPOINTS, 3):
        raise InputError(
            f"draw_pose: expected keypoints [{s.NUM_KEYPOINTS}, 3], got {list(kp.shape)}"
        )
    if not np.isfinite(kp).all():
        raise InputError("draw_pose: keypoints contain NaN or infinite values")
    image = _canvas(canvas, 1, width, height)[0]
    _draw(image, kp, float(min_confidence), _Sizes(width, height))
    return image


def draw_pose_sequence(
    pose: PoseSequence, canvas: np.ndarray | None = None, min_confidence: float = 0.3
) -> np.ndarray:
    """Pose maps of every frame: ``uint8 [T, H, W, 3]`` at the sequence's size, on black or
    on ``canvas`` (``[H, W, 3]`` for all frames, or ``[T, H, W, 3]``; never modified)."""
    if not isinstance(pose, PoseSequence):
        raise InputError(f"draw_pose_sequence: expected a PoseSequence, got {type(pose).__name__}")
    pose.validate()
    out = _canvas(canvas, len(pose), pose.width, pose.height)
    sizes = _Sizes(pose.width, pose.height)
    kps = pose.keypoints.astype(np.float64)
    for t in range(len(pose)):
        _draw(out[t], kps[t], float(min_confidence), sizes)
    return out


def write_pose_video(
    pose: PoseSequence,
    path: str | Path,
    audio: np.ndarray | None = None,
    backgrounds: Iterable[np.ndarray] | None = None,
) -> None:
    """Skeletons of ``pose`` as an mp4 at ``path`` (atomically), drawn over ``backgrounds``
    (``[H, W, 3]`` uint8 frames of the pose's size, one per pose frame) or on black, with
    ``audio`` (16 kHz mono) muxed; an odd side gets a black row or column (H.264)."""
    from cospeech.media.image import pad_to_even
    from cospeech.media.video import VideoWriter
    from cospeech.progress import track

    canvases = itertools.repeat(None) if backgrounds is None else backgrounds
    frames = zip(pose.keypoints, canvases, strict=False)
    with VideoWriter(path, pose.fps, audio=audio) as writer:
        for keypoints, canvas in track(frames, "draw", len(pose), "frame", leave=False):
            writer.add(pad_to_even(draw_pose(keypoints, pose.width, pose.height, canvas)))


def _canvas(canvas: np.ndarray | None, frames: int, width: int, height: int) -> np.ndarray:
    """A fresh ``uint8 [frames, H, W, 3]`` buffer: black, or a copy of ``canvas``."""
    if canvas is None:
        return np.zeros((frames, height, width, 3), dtype=np.uint8)
    canvas = np.asarray(canvas)
    if canvas.dtype != np.uint8 or canvas.shape[-3:] != (height, width, 3):
        raise InputError(
            f"draw: canvas must be uint8 [{height}, {width}, 3], "
            f"got {canvas.dtype} {list(canvas.shape)}"
        )
    if canvas.ndim == 3:
        return np.repeat(canvas[None], frames, axis=0)
    if canvas.ndim == 4 and canvas.shape[0] == frames:
        return canvas.copy()
    raise InputError(
        f"draw: canvas must be [H, W, 3] or [{frames}, H, W, 3], got {list(canvas.shape)}"
    )


def _draw(image: np.ndarray, kp: np.ndarray, min_confidence: float, sz: _Sizes) -> None:
    """Draw ``kp [133, 3]`` (float64) into ``image [H, W, 3]`` in place."""
    conf = kp[:, 2]
    visible = (conf >= min_confidence) & (conf > 0)
    xy = np.clip(kp[:, :2] - 0.5, -_LIMIT, _LIMIT)  # OpenCV puts pixel centres on integers
    fixed = np.rint(xy * _ONE).astype(np.int32)

    # Body, OpenPose-18 with the neck between the shoulders.
    body_xy = xy[_BODY_IDX]
    body_vis = visible[_BODY_IDX]
    body_xy[1] = 0.5 * (xy[s.LEFT_SHOULDER] + xy[s.RIGHT_SHOULDER])
    body_vis[1] = visible[s.LEFT_SHOULDER] and visible[s.RIGHT_SHOULDER]
    limbs = np.flatnonzero(body_vis[_LIMB_A] & body_vis[_LIMB_B])
    if limbs.size:
        a, b = body_xy[_LIMB_A[limbs]], body_xy[_LIMB_B[limbs]]
        centre = 0.5 * (a + b)
        half = 0.5 * np.hypot(*(b - a).T)[:, None]
        angle = np.arctan2(b[:, 1] - a[:, 1], b[:, 0] - a[:, 0])[:, None]
        u, v = half * _COS, sz.stick * _SIN  # [L, steps] in the limb's frame
        ca, sa = np.cos(angle), np.sin(angle)
        poly = np.stack([centre[:, :1] + u * ca - v * sa, centre[:, 1:] + u * sa + v * ca], -1)
        poly = np.rint(poly * _ONE).astype(np.int32)
        for k, limb in enumerate(limbs.tolist()):
            cv2.fillConvexPoly(image, poly[k], LIMB_COLORS[limb], cv2.LINE_AA, _SHIFT)
    body_fixed = np.rint(body_xy * _ONE).astype(np.int32).tolist()
    for i in np.flatnonzero(body_vis).tolist():
        cv2.circle(image, body_fixed[i], sz.joint, BODY_COLORS[i], -1, cv2.LINE_AA, _SHIFT)

    # Hands: coloured bones, then blue joints.
    for hand in _HANDS:
        hand_vis = visible[hand]
        if not hand_vis.any():
            continue
        pts = fixed[hand].tolist()
        for bone in np.flatnonzero(hand_vis[_HAND_A] & hand_vis[_HAND_B]).tolist():
            cv2.line(
                image, pts[_HAND_A[bone]], pts[_HAND_B[bone]], HAND_BONE_COLORS[bone],
                sz.hand_line, cv2.LINE_AA, _SHIFT,
            )  # fmt: skip
        for j in np.flatnonzero(hand_vis).tolist():
            cv2.circle(image, pts[j], sz.hand_joint, HAND_POINT_COLOR, -1, cv2.LINE_AA, _SHIFT)

    # Face: white dots.
    for p in fixed[_FACE[visible[_FACE]]].tolist():
        cv2.circle(image, p, sz.face_dot, FACE_POINT_COLOR, -1, cv2.LINE_AA, _SHIFT)
