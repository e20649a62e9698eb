"""Measurements of the reference pose that the rules move relative to (implicit retargeting).

All rule amplitudes are angles or fractions of a length measured here (shoulder width,
face width, limb lengths), so any reference pose in the COCO-WholeBody-133 layout works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

FACE_POINTS = 68
MIN_LENGTH_PX = 1e-3  # shorter reference lengths cannot be measured


@dataclass(frozen=True)
class ArmRig:
    """One arm of the reference: joint indices, lengths (pixels) and directions (radians).

    ``side`` is +1 for the person's right arm (image left), -1 for the left arm: rule
    deltas are written for the right arm and mirrored by this sign. ``thumb_side`` is +1
    when the thumb lies at +90 degrees from the hand axis (wrist -> middle knuckle).
    """

    side: float
    shoulder: int
    elbow: int
    wrist: int
    hand: tuple[int, ...]
    upper_length: float
    forearm_length: float
    upper_angle: float
    forearm_angle: float
    hand_angle: float
    thumb_side: float


@dataclass(frozen=True)
class ReferenceRig:
    """The reference pose ``points`` ``[133, 2]``, ``confidence`` ``[133]`` and its measures:
    ``shoulder_width`` and ``face_width`` in pixels, the face frame (``face_origin`` midway
    between the eyes, unit axes ``face_x`` towards the person's left eye and ``face_y``
    down the face), the arms."""

    points: np.ndarray
    confidence: np.ndarray
    shoulder_width: float
    face_width: float
    face_origin: np.ndarray
    face_x: np.ndarray
    face_y: np.ndarray
    arms: tuple[ArmRig, ArmRig]

    @property
    def face_local(self) -> np.ndarray:
        """The 68 face points ``[68, 2]`` in the face frame, in face widths."""
        rel = self.points[schema.FACE_OFFSET : schema.FACE_OFFSET + FACE_POINTS] - self.face_origin
        return np.stack([rel @ self.face_x, rel @ self.face_y], axis=-1) / self.face_width

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Face-frame offsets ``[..., 2]`` in face widths -> image offsets in pixels."""
        return (local[..., :1] * self.face_x + local[..., 1:] * self.face_y) * self.face_width


def _angle(vector: np.ndarray) -> float:
    return float(np.arctan2(vector[1], vector[0]))


def _length(vector: np.ndarray, what: str) -> float:
    length = float(np.linalg.norm(vector))
    if length < MIN_LENGTH_PX:
        raise InputError(f"reference pose: the {what} has zero length")
    return length


def _arm(points: np.ndarray, side: float) -> ArmRig:
    if side > 0:
        s, e, w, hand = (
            schema.RIGHT_SHOULDER,
            schema.RIGHT_ELBOW,
            schema.RIGHT_WRIST,
            schema.RIGHT_HAND,
        )
        name = "right"
    else:
        s, e, w, hand = schema.LEFT_SHOULDER, schema.LEFT_ELBOW, schema.LEFT_WRIST, schema.LEFT_HAND
        name = "left"
    upper, fore = points[e] - points[s], points[w] - points[e]
    hand_pts = points[list(hand)]
    axis = hand_pts[9] - hand_pts[0]  # wrist -> middle-finger knuckle
    _length(axis, f"{name} hand")
    thumb = hand_pts[4] - hand_pts[0]
    thumb_side = 1.0 if (-axis[1] * thumb[0] + axis[0] * thumb[1]) >= 0 else -1.0
    return ArmRig(
        side=side, shoulder=s, elbow=e, wrist=w, hand=tuple(hand),
        upper_length=_length(upper, f"{name} upper arm"),
        forearm_length=_length(fore, f"{name} forearm"),
        upper_angle=_angle(upper), forearm_angle=_angle(fore), hand_angle=_angle(axis),
        thumb_side=thumb_side,
    )  # fmt: skip


def measure_reference(keypoints: np.ndarray) -> ReferenceRig:
    """Measure a reference pose ``[133, 3]`` (x, y, confidence)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (schema.NUM_KEYPOINTS, 3) or not np.isfinite(kp).all():
        raise InputError(
            f"reference pose: expected finite keypoints [{schema.NUM_KEYPOINTS}, 3], "
            f"got {list(kp.shape)}"
        )
    points = kp[:, :2]
    shoulder_width = _length(
        points[schema.LEFT_SHOULDER] - points[schema.RIGHT_SHOULDER], "shoulder line"
    )
    face = points[schema.FACE_OFFSET : schema.FACE_OFFSET + FACE_POINTS]
    right_eye, left_eye = face[36:42].mean(axis=0), face[42:48].mean(axis=0)
    face_x = left_eye - right_eye
    face_x /= _length(face_x, "eye line")
    face_y = np.array([-face_x[1], face_x[0]])
    return ReferenceRig(
        points=points,
        confidence=kp[:, 2],
        shoulder_width=shoulder_width,
        face_width=_length(face[16] - face[0], "jaw line"),
        face_origin=(right_eye + left_eye) / 2,
        face_x=face_x,
        face_y=face_y,
        arms=(_arm(points, 1.0), _arm(points, -1.0)),
    )
