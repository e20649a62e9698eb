"""Motion quality measures, on keypoints ``[T, 133, 3]`` in pixels.

* lip vertex error: mean distance (px) between predicted and true mouth keypoints (the 20
  lip points), over frames and points;
* mouth-opening correlation: Pearson correlation over time of the inner-lip gap (iBUG points
  62-66) with the truth;
* beat alignment: kinematic beats (local minima of wrist speed that end a movement) scored
  against syllable onsets (vowel starts) by ``mean exp(-d^2 / (2 sigma^2))``, ``d`` the
  distance of each beat to the nearest onset (the BeatAlign score of Li et al. 2021);
* hand variance: variance over time of the hand keypoints (x and y summed, averaged over
  points); the diversity ratio is predicted / true.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cospeech.audio.phonemes import VOWELS, PhonemeSegment
from cospeech.errors import InputError
from cospeech.pose import schema

HANDS = schema.LEFT_HAND + schema.RIGHT_HAND
WRISTS = (schema.LEFT_WRIST, schema.RIGHT_WRIST)
BEAT_SIGMA_S = 0.1
BEAT_WINDOW_S = 0.2  # a speed minimum is a beat when the speed peaks this close before it ...
BEAT_PROMINENCE = 0.01  # ... by at least this many shoulder widths per frame above it


def lip_vertex_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean mouth-keypoint distance in pixels."""
    mouth = list(schema.MOUTH)
    return float(np.linalg.norm(predicted[:, mouth, :2] - truth[:, mouth, :2], axis=-1).mean())


def mouth_opening(keypoints: np.ndarray) -> np.ndarray:
    """Inner-lip gap ``[T]`` in pixels."""
    top, bottom = keypoints[:, schema.INNER_LIP_TOP, :2], keypoints[:, schema.INNER_LIP_BOTTOM, :2]
    return np.linalg.norm(top - bottom, axis=-1)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two series ``[T]``; NaN when either is constant (every value
    equal: a mean that is off by rounding would otherwise leave noise to correlate)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"series must be [T] of one length, got {a.shape}, {b.shape}")
    if a.size == 0 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def mouth_opening_correlation(predicted: np.ndarray, truth: np.ndarray) -> float:
    return correlation(mouth_opening(predicted), mouth_opening(truth))


def syllable_onsets(phonemes: Sequence[PhonemeSegment]) -> np.ndarray:
    """Start times (s) of the vowel segments."""
    return np.array([s.start for s in phonemes if s.phone in VOWELS], dtype=np.float64)


def wrist_speed(keypoints: np.ndarray) -> np.ndarray:
    """Mean speed of the two wrists ``[T]`` (px per frame, central differences)."""
    wrists = keypoints[:, list(WRISTS), :2].astype(np.float64)
    velocity = np.gradient(wrists, axis=0) if len(wrists) > 1 else np.zeros_like(wrists)
    return np.linalg.norm(velocity, axis=-1).mean(axis=1)


def motion_beats(keypoints: np.ndarray, fps: float, scale: float) -> np.ndarray:
    """Times (s) of kinematic beats: wrist-speed minima preceded within ``BEAT_WINDOW_S`` by
    a peak at least ``BEAT_PROMINENCE * scale`` px/frame higher (``scale``: shoulder width)."""
    speed = wrist_speed(keypoints)
    window = max(1, round(BEAT_WINDOW_S * fps))
    beats = []
    for t in range(1, len(speed) - 1):
        if speed[t] < speed[t - 1] and speed[t] <= speed[t + 1]:
            peak = speed[max(0, t - window) : t].max()
            if peak - speed[t] >= BEAT_PROMINENCE * scale:
                beats.append((t + 0.5) / fps)
    return np.array(beats)


def beat_alignment(beats: np.ndarray, onsets: np.ndarray, sigma: float = BEAT_SIGMA_S) -> float:
    """``mean over beats of exp(-d^2 / (2 sigma^2))``; NaN without beats or onsets."""
    if beats.size == 0 or onsets.size == 0:
        return float("nan")
    distance = np.abs(beats[:, None] - onsets[None, :]).min(axis=1)
    return float(np.exp(-(distance**2) / (2 * sigma**2)).mean())


def hand_variance(keypoints: np.ndarray) -> float:
    """Variance over time of the hand keypoints (px^2, x + y, mean over the 42 points)."""
    hands = keypoints[:, list(HANDS), :2].astype(np.float64)
    return float(hands.var(axis=0).sum(axis=-1).mean())
