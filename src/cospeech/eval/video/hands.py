"""Hand keypoint confidence (HKC) and hand keypoint variance (HKV) from MediaPipe Holistic.

Keypoints come from the project's Holistic backend
(:class:`cospeech.pose.extract.mediapipe_backend.MediaPipeHolistic`, video mode) as
COCO-WholeBody ``[133, 3]``: body points carry BlazePose's visibility, hand points
confidence 1 when Holistic found the hand and 0 when not (MediaPipe gives no per-point
hand score).

* A hand is *expected* in a frame when its wrist's pose visibility is at least
  ``min_wrist_visibility``. HKC is the mean hand-keypoint confidence over the expected
  (frame, hand) pairs: with Holistic, the share of expected hands that were found. NaN when
  no hand is ever expected (a head-and-shoulders shot).
* HKV is, per hand, the variance over the frames where the hand was found of its 21 points
  (x and y variances summed, in px^2, mean over the points: the definition of
  :func:`cospeech.motion.metrics.hand_variance`, restricted to detected frames), averaged
  over the hands found in at least two frames; NaN when none was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

SIDES = ((schema.LEFT_WRIST, schema.LEFT_HAND), (schema.RIGHT_WRIST, schema.RIGHT_HAND))


@dataclass(frozen=True)
class HandConfig:
    """``min_wrist_visibility``: pose visibility of a wrist from which its hand is expected."""

    min_wrist_visibility: float = 0.5


@dataclass(frozen=True)
class HandScores:
    """HKC, HKV (px^2) and how many (frame, hand) pairs expected / found a hand."""

    confidence: float
    variance: float
    expected: int
    found: int


def hand_scores(keypoints: np.ndarray, config: HandConfig = HandConfig()) -> HandScores:
    """HKC and HKV of keypoints ``[F, 133, 3]`` (pixels, confidence)."""
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (schema.NUM_KEYPOINTS, 3):
        raise InputError(f"keypoints must be [F, 133, 3], got {list(keypoints.shape)}")
    confidences, variances, found_total = [], [], 0
    for wrist, hand in SIDES:
        score = keypoints[:, list(hand), 2].mean(axis=1)
        expected = keypoints[:, wrist, 2] >= config.min_wrist_visibility
        confidences.append(score[expected])
        found = score > 0
        found_total += int(found.sum())
        if found.sum() >= 2:
            points = keypoints[found][:, list(hand), :2]
            variances.append(points.var(axis=0).sum(axis=-1).mean())
    expected_scores = np.concatenate(confidences)
    return HandScores(
        confidence=float(expected_scores.mean()) if expected_scores.size else float("nan"),
        variance=float(np.mean(variances)) if variances else float("nan"),
        expected=int(expected_scores.size),
        found=found_total,
    )
