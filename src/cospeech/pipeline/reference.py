"""The reference photo, framed like the training videos.

A photo of any size is cropped to a square around the person and resized to the model's
resolution so that the shoulders sit where they sit in the training corpus: the
shoulder midpoint at ``center`` (fractions of the frame) and the shoulder line
``shoulder_width`` of the frame wide (measured on the 120 identities of the synthetic
corpus: midpoint (0.50, 0.45), width 0.41 +- 0.02). Parts of the square outside the photo
are filled by repeating its border. The keypoints move with the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema
from cospeech.pose.sequence import PoseSequence

MIN_CONFIDENCE = 0.3
MIN_SHOULDER_PIXELS = 4.0


@dataclass(frozen=True)
class Framing:
    """Where the shoulders go in the output square (fractions of its side)."""

    center: tuple[float, float] = (0.5, 0.45)
    shoulder_width: float = 0.41


@dataclass(frozen=True)
class Reference:
    """The framed reference: ``image`` uint8 ``[size, size, 3]`` and its ``keypoints``
    ``[133, 3]`` in output pixels."""

    image: np.ndarray
    keypoints: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def crop_box(keypoints: np.ndarray, framing: Framing) -> tuple[float, float, float]:
    """``(left, top, side)`` in photo pixels of the square that frames ``keypoints``
    ``[133, 3]`` (InputError when the shoulders are not found)."""
    shoulders = keypoints[[schema.LEFT_SHOULDER, schema.RIGHT_SHOULDER]]
    if (shoulders[:, 2] < MIN_CONFIDENCE).any():
        raise InputError("no person found in the image (shoulders not visible)")
    width = float(np.linalg.norm(shoulders[0, :2] - shoulders[1, :2]))
    if width < MIN_SHOULDER_PIXELS:
        raise InputError("no person found in the image (the person is too small)")
    side = width / framing.shoulder_width
    middle = shoulders[:, :2].mean(axis=0)
    left = float(middle[0]) - framing.center[0] * side
    top = float(middle[1]) - framing.center[1] * side
    return left, top, side


def describe_framing(
    width: int, height: int, pose: PoseSequence, framing: Framing | None = None
) -> str:
    """One line on what was found in a ``width x height`` photo with ``pose`` (one frame,
    any scale of the photo's pixels) and the square :func:`frame_reference` cuts, e.g.
    ``512x512 photo: one person, shoulders 180 px apart; framed 439 px square at (37, -21),
    8 % of it outside the photo (its border repeated)``."""
    keypoints = pose.keypoints[0].copy()
    keypoints[:, 0] *= width / pose.width
    keypoints[:, 1] *= height / pose.height
    left, top, side = crop_box(keypoints, framing or Framing())
    shoulders = keypoints[[schema.LEFT_SHOULDER, schema.RIGHT_SHOULDER], :2]
    inside_w = max(0.0, min(left + side, width) - max(left, 0.0))
    inside_h = max(0.0, min(top + side, height) - max(top, 0.0))
    outside = 1.0 - inside_w * inside_h / side**2
    text = (
        f"{width}x{height} photo: one person, shoulders "
        f"{np.linalg.norm(shoulders[0] - shoulders[1]):.0f} px apart; framed {side:.0f} px "
        f"square at ({left:.0f}, {top:.0f})"
    )
    if outside < 0.005:
        return text + ", inside the photo"
    return text + f", {100 * outside:.0f} % of it outside the photo (its border repeated)"


def frame_reference(
    image: np.ndarray, pose: PoseSequence, size: int, framing: Framing | None = None
) -> Reference:
    """Crop photo ``image`` ``[H, W, 3]`` uint8 around the person in ``pose`` (one frame, in
    the photo's pixels or any scale of them) and resize to ``size x size``."""
    framing = framing or Framing()
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"reference image: expected [H, W, 3], got {list(image.shape)}")
    keypoints = pose.keypoints[0].copy()
    keypoints[:, 0] *= image.shape[1] / pose.width
    keypoints[:, 1] *= image.shape[0] / pose.height
    left, top, side = crop_box(keypoints, framing)
    scale = size / side
    # Affine map photo -> output: x' = (x - left) * scale.
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    shrinking = scale < 1
    framed = cv2.warpAffine(
        image, matrix, (size, size),
        flags=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    moved = keypoints.copy()
    moved[:, 0] = (keypoints[:, 0] - left) * scale
    moved[:, 1] = (keypoints[:, 1] - top) * scale
    return Reference(framed, moved)
