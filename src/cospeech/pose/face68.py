"""Measures on the 68 face landmarks (iBUG order, 0-based: dlib's, or the face of a
COCO-WholeBody pose, :data:`cospeech.pose.schema.FACE`): mouth opening and head motion.

Shared by the video metrics (dlib landmarks of generated frames, :mod:`cospeech.eval`) and
the motion model's head calibration (keypoints, :mod:`cospeech.motion.head_fit`), so that
both measure the same thing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

INNER_LIP_TOP = schema.INNER_LIP_TOP - schema.FACE_OFFSET  # 62
INNER_LIP_BOTTOM = schema.INNER_LIP_BOTTOM - schema.FACE_OFFSET  # 66
RIGHT_EYE = [i - schema.FACE_OFFSET for i in schema.FACE_RIGHT_EYE]  # 36-41
LEFT_EYE = [i - schema.FACE_OFFSET for i in schema.FACE_LEFT_EYE]  # 42-47
NOSE_TIP = schema.FACE_NOSE_BRIDGE[-1] - schema.FACE_OFFSET  # 30


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over inter-ocular distance ``[F]`` from landmarks ``[F, 68, 2]`` (NaN
    rows, frames without a face, give NaN)."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise InputError(f"landmarks must be [F, 68, 2], got {list(landmarks.shape)}")
    gap = np.linalg.norm(landmarks[:, INNER_LIP_TOP] - landmarks[:, INNER_LIP_BOTTOM], axis=-1)
    eyes = landmarks[:, RIGHT_EYE].mean(axis=1) - landmarks[:, LEFT_EYE].mean(axis=1)
    ocular = np.linalg.norm(eyes, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ocular > 0, gap / ocular, np.nan)


def head_motion(landmarks: np.ndarray) -> float:
    """Head motion of landmarks ``[F, 68, 2]`` (NaN rows: no face): the spread of the eye
    centre (midpoint of the two eye centres) over the frames with a face, ``sqrt(var_x +
    var_y)``, over the mean inter-ocular distance; NaN with fewer than 2 such frames."""
    return _spread_over_iod(landmarks, lambda centre: centre)


def head_turn(landmarks: np.ndarray) -> float:
    """Head turns and nods of landmarks ``[F, 68, 2]``: the spread of the nose tip's offset
    from the eye centre (:data:`NOSE_TIP` minus the midpoint of the eye centres; it moves
    when the head turns or nods, not when it shifts), as :func:`head_motion`."""
    return _spread_over_iod(landmarks, lambda centre: landmarks[:, NOSE_TIP] - centre)


def _spread_over_iod(landmarks: np.ndarray, point: Callable[[np.ndarray], np.ndarray]) -> float:
    """``sqrt(var_x + var_y)`` of ``point(eye_centre)`` ``[F, 2]`` over the frames with a face,
    over the mean inter-ocular distance; NaN with fewer than 2 such frames."""
    right = landmarks[:, RIGHT_EYE].mean(axis=1)
    left = landmarks[:, LEFT_EYE].mean(axis=1)
    values = point((right + left) / 2)
    found = np.isfinite(right).all(axis=1) & np.isfinite(left).all(axis=1)
    found &= np.isfinite(values).all(axis=1)
    if found.sum() < 2:
        return float("nan")
    spread = np.sqrt(values[found].var(axis=0).sum())
    return float(spread / np.linalg.norm(right[found] - left[found], axis=1).mean())
