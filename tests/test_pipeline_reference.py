"""Framing the reference photo around the person (crop, resize, keypoints moved along)."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.errors import InputError
from cospeech.pipeline.reference import Framing, describe_framing, frame_reference
from cospeech.pose import schema
from cospeech.pose.sequence import PoseSequence


def _photo_with_person(width: int, height: int, shoulders: tuple, nose: tuple):
    """A grey photo with a red square on the nose, and keypoints for shoulders and nose."""
    image = np.full((height, width, 3), 90, np.uint8)
    x, y = nose
    image[y - 6 : y + 6, x - 6 : x + 6] = (255, 0, 0)
    keypoints = np.zeros((schema.NUM_KEYPOINTS, 3), np.float32)
    keypoints[schema.LEFT_SHOULDER] = (*shoulders[0], 1.0)
    keypoints[schema.RIGHT_SHOULDER] = (*shoulders[1], 1.0)
    keypoints[schema.NOSE] = (x, y, 1.0)
    return image, keypoints


def test_shoulders_land_where_the_framing_puts_them():
    # 640x480 photo, shoulders 200 px apart around (300, 260), nose above them.
    image, keypoints = _photo_with_person(640, 480, ((400, 260), (200, 260)), (300, 150))
    framing = Framing(center=(0.5, 0.45), shoulder_width=0.4)
    size = 128
    ref = frame_reference(image, PoseSequence(keypoints[None], 1.0, 640, 480), size, framing)
    assert ref.image.shape == (size, size, 3) and ref.image.dtype == np.uint8
    left, right = ref.keypoints[schema.LEFT_SHOULDER], ref.keypoints[schema.RIGHT_SHOULDER]
    np.testing.assert_allclose((left[:2] + right[:2]) / 2, (0.5 * size, 0.45 * size), atol=1e-3)
    assert abs(left[0] - right[0]) == pytest.approx(0.4 * size, abs=1e-3)
    # crop side = 200 / 0.4 = 500 px, scale 128 / 500; the nose moves by the same map
    scale = size / 500
    top_left = np.array([300 - 0.5 * 500, 260 - 0.45 * 500])
    expected_nose = (np.array([300, 150]) - top_left) * scale
    np.testing.assert_allclose(ref.keypoints[schema.NOSE, :2], expected_nose, atol=1e-3)
    # ... and so do the pixels: the red square sits around the moved nose
    red = np.argwhere((ref.image[..., 0] > 200) & (ref.image[..., 1] < 60))
    np.testing.assert_allclose(red.mean(axis=0)[::-1], expected_nose, atol=1.0)
    # confidences are unchanged
    np.testing.assert_array_equal(ref.keypoints[:, 2], keypoints[:, 2])


def test_pose_given_at_another_scale_is_rescaled_to_the_photo():
    image, keypoints = _photo_with_person(200, 200, ((140, 110), (60, 110)), (100, 60))
    half = keypoints.copy()
    half[:, :2] /= 2  # the same pose, stored for a 100x100 frame
    a = frame_reference(image, PoseSequence(keypoints[None], 1.0, 200, 200), 64)
    b = frame_reference(image, PoseSequence(half[None], 1.0, 100, 100), 64)
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)
    # Exact: scaling by 2 is exact in floats, so both crops are the same warpAffine call.
    np.testing.assert_array_equal(a.image, b.image)


def test_no_shoulders_is_a_clear_error():
    image, keypoints = _photo_with_person(100, 100, ((70, 60), (30, 60)), (50, 30))
    keypoints[schema.LEFT_SHOULDER, 2] = 0.0
    with pytest.raises(InputError, match="no person found"):
        frame_reference(image, PoseSequence(keypoints[None], 1.0, 100, 100), 64)


def test_framing_is_described_in_one_line():
    """640x480, shoulders 200 px apart at (300, 260): the square is 200 / 0.41 = 487.8 px at
    (300 - 0.5 x 487.8, 260 - 0.45 x 487.8) = (56.1, 40.5); it reaches 527.5 px down, so
    47.5 of its 487.8 rows (9.7 %) lie below the photo."""
    keypoints = _photo_with_person(640, 480, ((400, 260), (200, 260)), (300, 150))[1]
    pose = PoseSequence(keypoints[None], 1.0, 640, 480)
    line = describe_framing(640, 480, pose)
    assert line == (
        "640x480 photo: one person, shoulders 200 px apart; framed 488 px square at (56, 40), "
        "10 % of it outside the photo (its border repeated)"
    )
    keypoints = _photo_with_person(1000, 1000, ((600, 500), (400, 500)), (500, 400))[1]
    inside = describe_framing(1000, 1000, PoseSequence(keypoints[None], 1.0, 1000, 1000))
    assert inside.endswith("framed 488 px square at (256, 280), inside the photo")
