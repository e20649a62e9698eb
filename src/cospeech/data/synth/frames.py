"""Body-relative coordinate frames: sizes of drawn features follow the body, not the image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.pose.schema import FACE_JAW, LEFT_SHOULDER, RIGHT_SHOULDER

MIN_CONFIDENCE = 0.3  # keypoints below this are missing; a part missing a point is not drawn
FACE_TO_SHOULDER_WIDTH = 0.42  # jaw width / shoulder width, to size the body from the face
MIN_FRAME_SIZE = 1e-3  # pixels; frames smaller than this are degenerate and skipped


@dataclass(frozen=True)
class Frame:
    """An oriented 2D frame: ``origin + size * (x * across + y * down)`` in pixels.

    ``across`` points from the person's right to their left (image right for a person facing
    the camera) and ``down`` is ``across`` turned a quarter towards the image bottom.
    """

    origin: np.ndarray  # [2]
    across: np.ndarray  # [2] unit
    size: float  # pixels per frame unit

    @classmethod
    def between(cls, right: np.ndarray, left: np.ndarray, origin: np.ndarray) -> Frame | None:
        """Frame sized by the distance ``right -> left``; None when they coincide."""
        delta = np.asarray(left, np.float64) - np.asarray(right, np.float64)
        size = float(np.hypot(delta[0], delta[1]))
        if size < MIN_FRAME_SIZE:
            return None
        return cls(np.asarray(origin, np.float64), delta / size, size)

    @property
    def down(self) -> np.ndarray:
        return np.array([-self.across[1], self.across[0]])

    @property
    def angle_deg(self) -> float:
        """Rotation of ``across`` from the image x axis, degrees."""
        return float(np.degrees(np.arctan2(self.across[1], self.across[0])))

    def to_image(self, coords: np.ndarray) -> np.ndarray:
        """Frame coordinates ``[..., 2]`` (x across, y down) -> image pixels ``[..., 2]``."""
        coords = np.asarray(coords, np.float64)
        axes = np.stack([self.across, self.down]) * self.size  # [2, 2]
        return self.origin + coords @ axes


def face_frame(points: np.ndarray, visible: np.ndarray) -> Frame | None:
    """Frame of the head: origin between the jaw ends (iBUG 0 and 16), size = jaw width."""
    jaw = list(FACE_JAW)
    if not visible[jaw].all():
        return None
    right, left = points[jaw[0]], points[jaw[-1]]
    return Frame.between(right, left, (right + left) / 2)


def body_frame(points: np.ndarray, visible: np.ndarray, face: Frame | None) -> Frame | None:
    """Frame of the torso: origin between the shoulders, size = shoulder width.

    Without both shoulders the size comes from the face (the frame is then only used to size
    arms and hands); without either, None.
    """
    if visible[[RIGHT_SHOULDER, LEFT_SHOULDER]].all():
        right, left = points[RIGHT_SHOULDER], points[LEFT_SHOULDER]
        return Frame.between(right, left, (right + left) / 2)
    if face is None:
        return None
    return Frame(face.origin, face.across, face.size / FACE_TO_SHOULDER_WIDTH)
