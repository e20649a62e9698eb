"""Arm follow (:mod:`cospeech.eval.video.follow`): hand-made keypoints with closed-form
errors, MediaPipe on a real photo against its own detection moved by a known offset, and
the Table 2 cells of ``cospeech eval bench``."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from cospeech.errors import InputError
from cospeech.eval.bench import TABLE2, table2
from cospeech.eval.video.follow import (
    ARM_POINTS,
    FollowConfig,
    arm_follow,
    holistic_keypoints,
)
from cospeech.pose import schema

SIZE = 100


def driving_pose(frames: int, shoulder_width: float) -> np.ndarray:
    """``[frames, 133, 3]``: every keypoint at the frame centre with confidence 0, the
    shoulders ``shoulder_width`` apart with confidence 1."""
    keypoints = np.zeros((frames, schema.NUM_KEYPOINTS, 3))
    keypoints[..., :2] = SIZE / 2
    keypoints[:, schema.LEFT_SHOULDER] = (SIZE / 2 + shoulder_width / 2, 30, 1)
    keypoints[:, schema.RIGHT_SHOULDER] = (SIZE / 2 - shoulder_width / 2, 30, 1)
    return keypoints


def test_error_is_the_median_distance_over_the_shoulder_width_and_pck_its_share():
    """Two frames of shoulder widths 20 and 40; the left elbow and the right wrist are
    seen in both, moved by 3-4-5 triangles: distances 5, 10 (frame 0) and 5, 20 (frame 1),
    so errors 0.25, 0.5, 0.125, 0.5: median 0.375, 2 of 4 within 0.25."""
    driving = np.concatenate([driving_pose(1, 20.0), driving_pose(1, 40.0)])
    detected = driving.copy()
    for frame, elbow_shift, wrist_shift in ((0, (3, 4), (6, 8)), (1, (3, 4), (12, 16))):
        for point, shift in ((schema.LEFT_ELBOW, elbow_shift), (schema.RIGHT_WRIST, wrist_shift)):
            driving[frame, point] = (40, 60, 0.9)
            detected[frame, point] = (40 + shift[0], 60 + shift[1], 0.8)
    follow = arm_follow(detected, driving, SIZE)
    assert follow.arms.error == pytest.approx(0.375, rel=1e-12)
    assert follow.arms.pck == 0.5  # 0.25 itself is within the threshold
    assert (follow.arms.points, follow.arms.frames) == (4, 2)
    # no hand point is confident: nothing counted, undefined
    assert math.isnan(follow.hands.error) and math.isnan(follow.hands.pck)
    assert (follow.hands.points, follow.hands.frames) == (0, 0)
    stricter = arm_follow(detected, driving, SIZE, FollowConfig(threshold=0.2))
    assert stricter.arms.pck == 0.25


def test_hand_points_are_their_own_group():
    """The 21 left-hand points seen, each 2 px off with shoulders 20 apart: error 0.1 for
    every one, and the arms (none seen) stay undefined."""
    driving = driving_pose(1, 20.0)
    hand = list(schema.LEFT_HAND)
    driving[0, hand] = (50, 70, 1)
    detected = driving.copy()
    detected[0, hand, 1] += 2
    follow = arm_follow(detected, driving, SIZE)
    assert follow.hands.error == pytest.approx(0.1, rel=1e-12)
    assert (follow.hands.pck, follow.hands.points, follow.hands.frames) == (1.0, 21, 1)
    assert math.isnan(follow.arms.error) and follow.arms.points == 0


@pytest.mark.parametrize(
    ("side", "point", "value"),
    [
        ("driving", schema.LEFT_WRIST, (40, 60, 0.4)),  # not confident in the driving pose
        ("detected", schema.LEFT_WRIST, (40, 60, 0.4)),  # not confident in the detection
        ("driving", schema.LEFT_WRIST, (-0.5, 60, 1)),  # left of the frame
        ("detected", schema.LEFT_WRIST, (40, SIZE, 1)),  # below it (y = S is outside)
        ("driving", schema.LEFT_SHOULDER, (60, 30, 0.4)),  # a driving shoulder not seen
        ("driving", schema.LEFT_SHOULDER, (40, 30, 1)),  # shoulders at one point
    ],
)
def test_a_point_not_confident_or_out_of_frame_in_either_pose_does_not_count(side, point, value):
    """Frame 0 counts the left wrist at error 0.5 unless the edit removes it; frame 1 always
    counts the right elbow at error 0.1 (shoulders 20 apart in both frames)."""
    driving = driving_pose(2, 20.0)
    driving[0, schema.LEFT_WRIST] = driving[1, schema.RIGHT_ELBOW] = (40, 60, 1)
    detected = driving.copy()
    detected[0, schema.LEFT_WRIST, 0] += 10
    detected[1, schema.RIGHT_ELBOW, 0] += 2
    assert arm_follow(detected, driving, SIZE).arms.points == 2
    edited = {"driving": driving, "detected": detected}[side]
    edited[0, point] = value
    follow = arm_follow(detected, driving, SIZE)
    assert follow.arms.error == pytest.approx(0.1, rel=1e-12)
    assert (follow.arms.pck, follow.arms.points, follow.arms.frames) == (1.0, 1, 1)


def test_nothing_countable_is_nan_and_bad_shapes_are_one_line_errors():
    driving = driving_pose(3, 20.0)  # shoulders only: arms and hands never seen
    follow = arm_follow(driving.copy(), driving, SIZE)
    for score in (follow.arms, follow.hands):
        assert math.isnan(score.error) and math.isnan(score.pck)
        assert (score.points, score.frames) == (0, 0)
    with pytest.raises(InputError, match=r"driving keypoints must be \[F, 133, 3\]"):
        arm_follow(driving, driving[:, :17], SIZE)
    with pytest.raises(InputError, match="2 frames of detected keypoints for 3 driving"):
        arm_follow(driving[:2], driving, SIZE)


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's astronaut at 256x256 (her right elbow in frame) as one frame, and
    MediaPipe Holistic's keypoints of it ``[1, 133, 3]``."""
    frame = cv2.resize(skimage_data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = frame[None]
    return frames, holistic_keypoints(frames)


def test_mediapipe_on_a_photo_against_its_own_detection_moved_by_a_known_offset(astronaut):
    """The driving pose is the detection itself, then the detection moved by 0.2 and 0.3
    shoulder widths: error 0, 0.2 and 0.3 (the shoulder width does not change with the
    move), PCK 1, 1 and 0; moved out of the frame nothing counts."""
    frames, detected = astronaut
    assert detected.shape == (1, schema.NUM_KEYPOINTS, 3)
    shoulders = detected[0, [schema.LEFT_SHOULDER, schema.RIGHT_SHOULDER]]
    assert (shoulders[:, 2] >= 0.5).all()
    width = float(np.linalg.norm(shoulders[0, :2] - shoulders[1, :2]))
    seen = detected[0, list(ARM_POINTS), 2] >= 0.5
    assert seen.any()  # the photo does show an arm MediaPipe is sure of

    same = arm_follow(detected, detected, frames.shape[1])
    assert (same.arms.error, same.arms.pck, same.arms.frames) == (0.0, 1.0, 1)
    assert 1 <= same.arms.points == int(seen.sum())
    for fraction, pck in ((0.2, 1.0), (0.3, 0.0)):
        driving = detected.astype(np.float64)
        driving[..., :2] += fraction * width * np.array([0.6, -0.8])  # a unit direction
        moved = arm_follow(detected, driving, frames.shape[1])
        # float32 keypoints moved in float64: ~1e-6 relative
        assert moved.arms.error == pytest.approx(fraction, rel=1e-5)
        assert moved.arms.pck == pck
    away = detected.astype(np.float64)
    away[..., 0] += frames.shape[1]
    assert math.isnan(arm_follow(detected, away, frames.shape[1]).arms.error)


def test_table2_shows_an_undefined_follow_as_a_dash():
    """A photo row's cells: the follow values with their decimals, ``-`` where undefined
    (NaN in memory, null in the JSON)."""
    photo = {
        "photo": "p", "frames": 5, "size": 256, "face_rate": 1.0, "identity_same_rate": 1.0,
        "mouth_speech_corr": 0.5, "head_motion": 0.1, "head_turn": 0.05,
        "arm_follow_error": 0.1234, "arm_follow_pck": 0.875, "hand_follow_error": float("nan"),
        "hand_follow_pck": None, "compute_fps": 10.0, "end_to_end_fps": 5.0, "seconds": 1.0,
    }  # fmt: skip
    report = {"rows": [{"label": "row", "note": None, "photos": [photo]}]}
    line = table2(report)[-1].strip("| ").split(" | ")
    cells = dict(zip(TABLE2, line, strict=True))
    assert cells["arm follow err ↓"] == "0.123" and cells["arm PCK ↑"] == "0.88"
    assert cells["hand follow err ↓"] == "-" and cells["hand PCK ↑"] == "-"
    assert cells["head turn"] == "0.050"
