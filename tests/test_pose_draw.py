"""Pose maps: colours where the bones are, nothing where they are not, speed."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.errors import InputError
from cospeech.pose import draw_pose, draw_pose_sequence
from cospeech.pose import schema as s
from cospeech.pose.draw import (
    BODY_COLORS,
    BODY_LIMBS,
    FACE_POINT_COLOR,
    HAND_BONE_COLORS,
    HAND_POINT_COLOR,
    LIMB_COLORS,
    NECK,
    OPENPOSE_KEYPOINTS,
)
from pose_fixture import upright_keypoints, upright_pose

W, H = 832, 480


def _xy(kp: np.ndarray, openpose_index: int) -> np.ndarray:
    i = OPENPOSE_KEYPOINTS[openpose_index]
    if i == NECK:
        return (kp[s.LEFT_SHOULDER, :2] + kp[s.RIGHT_SHOULDER, :2]) / 2
    return kp[i, :2]


def _pixel(image: np.ndarray, xy) -> tuple[int, ...]:
    """Colour of the pixel that contains continuous position ``xy``."""
    return tuple(int(v) for v in image[int(xy[1]), int(xy[0])])


def _limb_midpoint(kp: np.ndarray, limb: int) -> np.ndarray:
    a, b = BODY_LIMBS[limb]
    return (_xy(kp, a) + _xy(kp, b)) / 2


# Limbs of the fixture whose middles are clear of every other drawing: the shoulders,
# both arms, and the two torso sides.
CLEAR_LIMBS = (0, 1, 2, 3, 4, 5, 6, 9)


def test_shape_dtype_and_black_background():
    image = draw_pose(upright_keypoints(), W, H)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    for corner in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert not image[corner].any()
    assert not image[:60].any()  # above the head
    assert 0.005 < (image.any(axis=2)).mean() < 0.2


def test_colours_are_distinct():
    assert len(set(BODY_COLORS)) == 18 and len(set(LIMB_COLORS)) == len(BODY_LIMBS) == 17
    assert len(set(HAND_BONE_COLORS)) == 20
    assert LIMB_COLORS[0] == (153, 0, 0)  # red, dimmed to 60 % as DWPose does


@pytest.mark.parametrize("limb", CLEAR_LIMBS)
def test_limb_midpoint_has_the_limb_colour(limb):
    kp = upright_keypoints()
    image = draw_pose(kp, W, H)
    mid = _limb_midpoint(kp, limb)
    x, y = int(mid[0]), int(mid[1])
    patch = image[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
    assert (patch == LIMB_COLORS[limb]).all(), (limb, patch)


def test_joints_have_body_colours():
    kp = upright_keypoints()
    image = draw_pose(kp, W, H)
    for j in (2, 3, 5, 6, 8, 11):  # shoulders, elbows, hips (wrists are under the hands)
        assert _pixel(image, _xy(kp, j)) == BODY_COLORS[j], j


def test_hand_bone_colour_and_joints():
    kp = np.zeros((s.NUM_KEYPOINTS, 3), np.float32)
    wrist, thumb = s.RIGHT_HAND[0], s.RIGHT_HAND[1]  # bone 0: wrist -> thumb base
    kp[wrist] = [100.5, 100.5, 1.0]
    kp[thumb] = [300.5, 100.5, 1.0]
    image = draw_pose(kp, 512, 512)
    assert _pixel(image, (200.5, 100.5)) == HAND_BONE_COLORS[0]
    assert _pixel(image, (100.5, 100.5)) == HAND_POINT_COLOR
    assert _pixel(image, (300.5, 100.5)) == HAND_POINT_COLOR
    assert not image[110:].any() and not image[:90].any()


def test_face_dots():
    kp = upright_keypoints()
    image = draw_pose(kp, W, H)
    for i in s.FACE_JAW:
        assert _pixel(image, kp[i]) == FACE_POINT_COLOR, i
    # small: a dot covers a few pixels around its centre, not its neighbourhood
    alone = np.zeros_like(kp)
    alone[s.FACE[0]] = [400.5, 200.5, 1.0]
    dot = draw_pose(alone, W, H)
    ys, xs = np.nonzero(dot.any(axis=2))
    assert ys.max() - ys.min() <= 8 and xs.max() - xs.min() <= 8


def test_low_confidence_points_are_not_drawn():
    kp = upright_keypoints()
    kp[s.LEFT_ELBOW, 2] = 0.2
    kp[list(s.RIGHT_HAND), 2] = 0.29
    image = draw_pose(kp, W, H)
    for limb in (4, 5):  # left upper arm, left forearm: both end at the left elbow
        assert _pixel(image, _limb_midpoint(kp, limb)) == (0, 0, 0), limb
    assert _pixel(image, kp[s.LEFT_ELBOW]) == (0, 0, 0)
    for i in s.RIGHT_HAND[1:]:
        assert _pixel(image, kp[i]) == (0, 0, 0), i
    # the same pose with a lower threshold draws them
    assert _pixel(draw_pose(kp, W, H, min_confidence=0.1), kp[s.LEFT_ELBOW]) == BODY_COLORS[6]


def test_neck_needs_both_shoulders():
    kp = upright_keypoints()
    kp[s.RIGHT_SHOULDER, 2] = 0.0
    image = draw_pose(kp, W, H)
    neck_to_left_hip = _limb_midpoint(kp, 9)
    assert _pixel(image, neck_to_left_hip) == (0, 0, 0)
    assert _pixel(draw_pose(upright_keypoints(), W, H), neck_to_left_hip) == LIMB_COLORS[9]


def test_nothing_visible_is_black():
    kp = upright_keypoints()
    kp[:, 2] = 0.0
    assert not draw_pose(kp, W, H).any()


def test_canvas_is_kept_and_not_modified():
    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    before = canvas.copy()
    kp = upright_keypoints()
    image = draw_pose(kp, W, H, canvas=canvas)
    np.testing.assert_array_equal(canvas, before)
    np.testing.assert_array_equal(image[:40], canvas[:40])
    assert _pixel(image, _limb_midpoint(kp, 2)) == LIMB_COLORS[2]


def test_sequence_matches_frames_and_is_deterministic():
    pose = upright_pose(4)
    rng = np.random.default_rng(1)
    pose.keypoints[..., :2] += rng.normal(0, 5, pose.keypoints[..., :2].shape).astype(np.float32)
    video = draw_pose_sequence(pose)
    assert video.shape == (4, H, W, 3) and video.dtype == np.uint8
    for t in range(4):
        np.testing.assert_array_equal(video[t], draw_pose(pose.keypoints[t], W, H))
    np.testing.assert_array_equal(video, draw_pose_sequence(pose))
    assert not np.array_equal(video[0], video[1])


def test_sequence_canvas_forms():
    pose = upright_pose(3, width=64, height=64)
    grey = np.full((64, 64, 3), 40, np.uint8)
    out = draw_pose_sequence(pose, canvas=grey)
    assert out.shape == (3, 64, 64, 3) and (out[:, 0, 0] == 40).all()
    per_frame = np.stack([grey, grey + 10, grey + 20])
    out = draw_pose_sequence(pose, canvas=per_frame)
    assert out[2, 0, 0, 0] == 60
    with pytest.raises(InputError):
        draw_pose_sequence(pose, canvas=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(InputError):
        draw_pose_sequence(pose, canvas=np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError):
        draw_pose_sequence(pose, canvas=np.zeros((32, 64, 3), np.uint8))


def test_thickness_scales_with_size():
    def ink(size: int) -> int:
        kp = upright_keypoints(size, size)
        return int(draw_pose(kp, size, size).any(axis=2).sum())

    ratio = ink(1024) / ink(512)
    assert 3.0 < ratio < 5.0  # twice the size, about four times the ink


def test_points_far_outside_do_not_break_drawing():
    kp = upright_keypoints()
    kp[s.LEFT_WRIST, :2] = [1e9, -1e9]
    image = draw_pose(kp, W, H)
    assert image.shape == (H, W, 3)


def test_bad_input():
    with pytest.raises(InputError):
        draw_pose(np.zeros((17, 3)), W, H)
    bad = upright_keypoints()
    bad[4, 0] = np.nan
    with pytest.raises(InputError):
        draw_pose(bad, W, H)
    with pytest.raises(InputError):
        draw_pose(upright_keypoints(), 0, H)
    with pytest.raises(InputError):
        draw_pose_sequence(upright_keypoints()[None])  # not a PoseSequence
