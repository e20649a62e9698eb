"""The photo layer: the photo warped to each pose, the model painting what it cannot show."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cospeech.errors import InputError
from cospeech.pipeline.photo_layer import PhotoLayer
from cospeech.pipeline.reference import Reference
from cospeech.pose import schema as s
from pose_fixture import closed_mouth, upright_keypoints

SIZE = 256


def _photo(rng: np.random.Generator) -> np.ndarray:
    """A smooth random photo (blurred noise), so that resampling errors stay small."""
    noise = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 3) * 4 - 384, 0, 255).astype(np.uint8)


def _layer(keypoints: np.ndarray, photo: np.ndarray, model_size: int = SIZE // 2) -> PhotoLayer:
    return PhotoLayer(Reference(photo, keypoints), model_size)


def test_the_reference_pose_gives_the_photo_whatever_the_model_painted():
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    photo = _photo(np.random.default_rng(0))
    layer = _layer(kp, photo)
    model_pose = kp.copy()
    model_pose[:, :2] /= 2  # the keypoints of the model's 128x128 frames
    painted = np.full((SIZE // 2, SIZE // 2, 3), 7, np.uint8)
    out = layer.compose(painted, model_pose)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    # remap positions are quantised to 1/32 px: the identity warp samples every pixel itself.
    np.testing.assert_array_equal(out, photo)


def test_an_opened_mouth_is_painted_by_the_model_and_the_rest_is_the_photo():
    open_mouth = upright_keypoints(SIZE, SIZE).astype(np.float64)
    photo = _photo(np.random.default_rng(1))
    layer = _layer(closed_mouth(open_mouth), photo)
    painted = np.full((SIZE // 2, SIZE // 2, 3), (250, 0, 250), np.uint8)
    model_pose = open_mouth.copy()
    model_pose[:, :2] /= 2
    out = layer.compose(painted, model_pose).astype(int)

    lips = np.round(open_mouth[list(s.FACE_INNER_LIPS), :2] - 0.5).astype(np.int32)
    opening = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(opening, [lips], 1)
    # Inside the opening the model's colour, exactly up to rounding (weight ~0 there).
    inside = cv2.erode(opening, np.ones((3, 3), np.uint8)).astype(bool)
    assert inside.any()
    assert np.abs(out[inside] - [250, 0, 250]).max() <= 2
    # Below the face's region (its hull + 8 % margin + feather: the lips move its MLS) the
    # pose did not change: the photo itself.
    chin = open_mouth[list(s.FACE_JAW), 1].max()
    below = int(np.ceil(chin + (0.08 + 3 * 0.015) * SIZE))
    np.testing.assert_array_equal(out[below:], photo[below:])


def test_photo_weight_is_zero_on_the_grown_gap_and_one_far_from_it():
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    layer = _layer(kp, np.zeros((SIZE, SIZE, 3), np.uint8))
    valid = np.ones((SIZE, SIZE), bool)
    np.testing.assert_array_equal(layer.photo_weight(valid), 1.0)
    valid[100:110, 120:140] = False
    weight = layer.photo_weight(valid)
    radius = layer.feather * SIZE  # 1.28 px: the gap grown by 1 px, blurred by radius / 2
    assert round(radius) == 1
    assert weight[100:110, 120:140].max() < 0.07  # the gap itself: the model's
    assert weight[:90].min() > 0.999 and weight[120:].min() > 0.999
    assert weight.min() >= 0.0 and weight.max() <= 1.0
    # Across the middle of the gap, a step blurred by a Gaussian: the grown gap spans
    # rows 99..110, so the photo's share at row y is the weight of the sampled, normalised
    # Gaussian kernel (OpenCV's: 7 taps for sigma 0.64 in float32) on the valid rows.
    rows = np.arange(85, 125)
    sigma = radius / 2
    taps = np.arange(-3, 4)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    valid_rows = (np.arange(SIZE) < 99) | (np.arange(SIZE) > 110)
    expected = np.array([kernel @ valid_rows[y + taps] for y in rows])
    np.testing.assert_allclose(weight[rows, 130], expected, atol=1e-5)  # float32 blur


def test_the_output_cannot_be_smaller_than_the_model_frames():
    kp = upright_keypoints(64, 64).astype(np.float64)
    with pytest.raises(InputError, match="smaller than the model's frames"):
        _layer(kp, np.zeros((64, 64, 3), np.uint8), model_size=128)


def test_only_a_warp_conditioned_model_paints_a_newly_opened_mouth():
    """A model that sees the warped photo paints the mouth's inside; for any other model,
    which would paint it blind, the photo's stretched lips stay (the warp's ``new_mouth``)."""
    from types import SimpleNamespace

    from cospeech.pipeline.photo_layer import photo_layer_for

    open_mouth = upright_keypoints(SIZE, SIZE).astype(np.float64)
    photo = _photo(np.random.default_rng(2))
    reference = Reference(photo, closed_mouth(open_mouth))
    painted = np.full((SIZE // 2, SIZE // 2, 3), (250, 0, 250), np.uint8)
    model_pose = open_mouth.copy()
    model_pose[:, :2] /= 2
    outputs = {}
    for warp_dim in (0, 17):
        bundle = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(warp_dim=warp_dim)))
        layer = photo_layer_for(bundle, reference, SIZE // 2)
        assert layer.warp.new_mouth == bool(warp_dim)
        outputs[warp_dim] = layer.compose(painted, model_pose).astype(int)
    lips = np.round(open_mouth[list(s.FACE_INNER_LIPS), :2] - 0.5).astype(np.int32)
    opening = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(opening, [lips], 1)
    inside = opening.astype(bool)
    painted_inside = {d: (np.abs(out[inside] - [250, 0, 250]).max(axis=-1) <= 2).sum()
                      for d, out in outputs.items()}  # fmt: skip
    assert painted_inside[17] > 20 and painted_inside[0] == 0
