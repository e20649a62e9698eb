"""The synthetic speaker's skeleton: proportions, neutral pose layout, hands."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.data.synth.skeleton import (
    GEOMETRY_RANGES,
    SHOULDER_HEIGHT,
    BodyGeometry,
    hand_points,
    neutral_pose,
    sample_geometry,
)
from cospeech.errors import InputError
from cospeech.pose import schema as s

SIZES = ((256, 256), (64, 64), (320, 240), (240, 320))


def _poses():
    for seed in range(6):
        geometry = sample_geometry(np.random.default_rng(seed))
        for width, height in SIZES:
            yield geometry, width, height, neutral_pose(geometry, width, height)


def test_sample_geometry_is_deterministic_and_in_range():
    a = sample_geometry(np.random.default_rng(3))
    assert a == sample_geometry(np.random.default_rng(3))
    assert a != sample_geometry(np.random.default_rng(4))
    for name, (lo, hi) in GEOMETRY_RANGES.items():
        assert lo <= getattr(a, name) <= hi
    assert BodyGeometry.from_dict(a.to_dict()) == a
    with pytest.raises(InputError):
        BodyGeometry.from_dict({**a.to_dict(), "tail": 1.0})


def test_layout_upper_body_frontal():
    for _, width, height, kp in _poses():
        assert kp.shape == (133, 3) and kp.dtype == np.float32
        face_bottom = kp[list(s.FACE), 1].max()
        shoulders = kp[[s.LEFT_SHOULDER, s.RIGHT_SHOULDER]]
        assert (shoulders[:, 1] > face_bottom).all()
        assert np.allclose(shoulders[:, 1], SHOULDER_HEIGHT * height)
        hips = kp[[s.LEFT_HIP, s.RIGHT_HIP], 1]
        assert (hips < height).all()
        if width >= height:  # the torso fills the frame down to near its bottom edge
            assert (hips > 0.8 * height).all()
        # Head in the upper part of the frame.
        assert kp[list(s.FACE), 1].min() > 0 and face_bottom < SHOULDER_HEIGHT * height
        # Elbows bent: wrists lie inwards of the elbows, below them.
        for elbow, wrist in ((s.LEFT_ELBOW, s.LEFT_WRIST), (s.RIGHT_ELBOW, s.RIGHT_WRIST)):
            assert abs(kp[wrist, 0] - width / 2) < abs(kp[elbow, 0] - width / 2)
            assert kp[wrist, 1] > kp[elbow, 1]


def test_left_is_image_right():
    for _, _, _, kp in _poses():
        for left, right in (
            (s.LEFT_EYE, s.RIGHT_EYE), (s.LEFT_EAR, s.RIGHT_EAR),
            (s.LEFT_SHOULDER, s.RIGHT_SHOULDER), (s.LEFT_ELBOW, s.RIGHT_ELBOW),
            (s.LEFT_WRIST, s.RIGHT_WRIST), (s.LEFT_HIP, s.RIGHT_HIP),
        ):  # fmt: skip
            assert kp[left, 0] > kp[right, 0]
        assert kp[list(s.LEFT_HAND), 0].mean() > kp[list(s.RIGHT_HAND), 0].mean()
        assert kp[list(s.FACE_LEFT_EYE), 0].mean() > kp[list(s.FACE_RIGHT_EYE), 0].mean()
        # iBUG jaw runs from the person's right (image left) to the left.
        assert kp[s.FACE_JAW[0], 0] < kp[s.FACE_JAW[-1], 0]


def test_confident_points_inside_the_frame_legs_hidden():
    for _, width, height, kp in _poses():
        visible = kp[:, 2] > 0
        assert set(np.flatnonzero(~visible)) == {13, 14, 15, 16, *s.FEET}
        xy = kp[visible, :2]
        assert (xy[:, 0] >= 0).all() and (xy[:, 0] < width).all()
        assert (xy[:, 1] >= 0).all() and (xy[:, 1] < height).all()
        assert (kp[list(s.FEET), 1] > height).all()


def test_face_closed_mouth_open_eyes():
    for geometry, width, height, kp in _poses():
        assert kp[s.INNER_LIP_TOP, 1] == kp[s.INNER_LIP_BOTTOM, 1]
        face_width = kp[s.FACE_JAW[-1], 0] - kp[s.FACE_JAW[0], 0]
        assert face_width == pytest.approx(geometry.face_width * min(width, height), rel=1e-4)
        f = s.FACE_OFFSET
        for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
            assert kp[f + lower, 1] - kp[f + upper, 1] > 0.02 * face_width
        mouth_y = kp[list(s.MOUTH), 1].mean()
        nose_y = kp[s.NOSE, 1]
        assert kp[s.FACE_JAW[8], 1] > mouth_y > nose_y > kp[s.LEFT_EYE, 1]


def test_hands_have_21_distinct_points():
    for _, width, height, kp in _poses():
        for hand in (s.LEFT_HAND, s.RIGHT_HAND):
            pts = kp[list(hand), :2]
            dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(21) * 1e9
            assert dist.min() > 0.005 * min(width, height)
            # Fingertips lie further from the wrist than the knuckles (natural, not a fist).
            for finger in s.HAND_FINGERS:
                assert np.linalg.norm(pts[finger[-1]] - pts[0]) > np.linalg.norm(
                    pts[finger[0]] - pts[0]
                )


def test_hand_points_vectorised_matches_single():
    rng = np.random.default_rng(0)
    wrist = rng.uniform(0, 100, (4, 3, 2))
    angle, size = rng.uniform(-3, 3, (4, 3)), rng.uniform(10, 30, (4, 3))
    curl, spread, roll = (
        rng.uniform(0, 1, (4, 3, 5)),
        rng.uniform(0, 1, (4, 3)),
        rng.uniform(0, 1.5, (4, 3)),
    )
    batch = hand_points(wrist, angle, size, curl, spread, roll, thumb_side=-1.0)
    assert batch.shape == (4, 3, 21, 2)
    single = hand_points(
        wrist[2, 1], angle[2, 1], size[2, 1], curl[2, 1], spread[2, 1], roll[2, 1], -1.0
    )
    np.testing.assert_allclose(batch[2, 1], single)
    # Straight middle finger: wrist to fingertip is the hand size.
    straight = hand_points(np.zeros(2), 0.0, 10.0, np.zeros(5), 0.0, 0.0, 1.0)
    assert np.linalg.norm(straight[12]) == pytest.approx(10.0, rel=1e-6)


def test_bad_size():
    with pytest.raises(InputError):
        neutral_pose(BodyGeometry(), 0, 10)
