"""Arm follow: do the arms and hands of a video stand where its driving keypoints put them?

The output of ``cospeech generate`` is made to follow driving keypoints ``[F, 133, 3]``
(COCO-WholeBody, pixels of the output frame: ``GenerateResult.keypoints``). MediaPipe
Holistic (:class:`cospeech.pose.extract.mediapipe_backend.MediaPipeHolistic`, video mode:
:func:`holistic_keypoints`) finds the arms and hands in the output frames, and
:func:`arm_follow` compares the two, in two groups: the **arms** (both elbows and wrists)
and the **hands** (the 2 x 21 hand points).

A keypoint of a frame *counts* when, in both the driving pose and the detection, its
confidence is at least ``min_confidence`` and it lies inside the frame (``0 <= x, y < S``),
and the frame's driving shoulders both have that confidence and are apart. Its error is
the distance between the detected and the driving position over the driving pose's
shoulder width in that frame (so it does not depend on the frame size or the framing).
Per group: ``error`` is the median error over every counted (frame, keypoint), ``pck`` the
share of them with an error of at most ``threshold`` (0.25 shoulder widths by default),
``points`` and ``frames`` how many (frame, keypoint) pairs and frames counted. With
nothing counted (arms out of frame, no hand detected) ``error`` and ``pck`` are NaN.

It sees only what MediaPipe detects: an arm the video draws where MediaPipe cannot find
it does not count, and MediaPipe's own error (a few pixels, more for a low-visibility
elbow) is part of the measure.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

ARM_POINTS = (schema.LEFT_ELBOW, schema.RIGHT_ELBOW, schema.LEFT_WRIST, schema.RIGHT_WRIST)
HAND_POINTS = schema.LEFT_HAND + schema.RIGHT_HAND


@dataclass(frozen=True)
class FollowConfig:
    """``min_confidence``: confidence from which a keypoint (and a driving shoulder)
    counts, in the driving pose and in the detection; ``threshold``: the error, in
    driving shoulder widths, up to which a keypoint follows (the PCK's threshold)."""

    min_confidence: float = 0.5
    threshold: float = 0.25


@dataclass(frozen=True)
class FollowScore:
    """One group of keypoints: the median ``error`` (driving shoulder widths), ``pck`` (share
    within the threshold), and the counted (frame, keypoint) ``points`` and ``frames``."""

    error: float
    pck: float
    points: int
    frames: int


@dataclass(frozen=True)
class ArmFollow:
    """The elbows and wrists (``arms``) and the hand points (``hands``)."""

    arms: FollowScore
    hands: FollowScore


def check_keypoints(keypoints: np.ndarray, name: str) -> np.ndarray:
    """``keypoints`` as float64 ``[F, 133, 3]`` (InputError naming ``name`` otherwise)."""
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (schema.NUM_KEYPOINTS, 3):
        raise InputError(f"{name} keypoints must be [F, 133, 3], got {list(keypoints.shape)}")
    return keypoints


def shoulder_widths(driving: np.ndarray, min_confidence: float) -> np.ndarray:
    """``[F]`` distance between the shoulders of ``driving`` ``[F, 133, 3]``; NaN in a frame
    where a shoulder's confidence is below ``min_confidence`` or the two coincide."""
    left, right = driving[:, schema.LEFT_SHOULDER], driving[:, schema.RIGHT_SHOULDER]
    widths = np.linalg.norm(left[:, :2] - right[:, :2], axis=-1)
    seen = (np.minimum(left[:, 2], right[:, 2]) >= min_confidence) & (widths > 0)
    return np.where(seen, widths, np.nan)


def countable(keypoints: np.ndarray, size: int, min_confidence: float) -> np.ndarray:
    """``[F, K]`` bool: confidence at least ``min_confidence`` and inside the ``size`` x
    ``size`` frame, of keypoints ``[F, K, 3]``."""
    x, y, confidence = np.moveaxis(keypoints, -1, 0)
    inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return inside & (confidence >= min_confidence)


def follow_score(
    detected: np.ndarray, driving: np.ndarray, widths: np.ndarray, size: int,
    config: FollowConfig,
) -> FollowScore:  # fmt: skip
    """One group: ``detected`` and ``driving`` ``[F, K, 3]`` keypoints, ``widths`` ``[F]``
    (NaN: the frame does not count)."""
    counted = (
        countable(detected, size, config.min_confidence)
        & countable(driving, size, config.min_confidence)
        & np.isfinite(widths)[:, None]
    )
    distances = np.linalg.norm(detected[..., :2] - driving[..., :2], axis=-1)
    errors = (distances / widths[:, None])[counted]
    if errors.size == 0:
        return FollowScore(float("nan"), float("nan"), 0, 0)
    return FollowScore(
        error=float(np.median(errors)),
        pck=float(np.mean(errors <= config.threshold)),
        points=int(errors.size),
        frames=int(counted.any(axis=1).sum()),
    )


def arm_follow(
    detected: np.ndarray, driving: np.ndarray, size: int, config: FollowConfig = FollowConfig()
) -> ArmFollow:
    """Arm and hand follow of keypoints ``detected`` in the frames against the ``driving``
    ones, both ``[F, 133, 3]`` (pixels of the ``size`` x ``size`` frames, confidence)."""
    detected = check_keypoints(detected, "detected")
    driving = check_keypoints(driving, "driving")
    if len(detected) != len(driving):
        raise InputError(
            f"{len(detected)} frames of detected keypoints for {len(driving)} driving ones"
        )
    widths = shoulder_widths(driving, config.min_confidence)
    return ArmFollow(*(
        follow_score(detected[:, list(points)], driving[:, list(points)], widths, size, config)
        for points in (ARM_POINTS, HAND_POINTS)
    ))  # fmt: skip


def holistic_keypoints(frames: np.ndarray) -> np.ndarray:
    """Keypoints ``[F, 133, 3]`` of uint8 RGB frames ``[F, H, W, 3]``: MediaPipe Holistic in
    video mode (as ``cospeech eval video``), pixels of the frames."""
    from cospeech.pose.extract.mediapipe_backend import MediaPipeHolistic

    with contextlib.closing(MediaPipeHolistic(static_images=False)) as holistic:
        return np.stack([holistic(frame) for frame in frames])
