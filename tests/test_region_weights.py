"""Region-weighted losses: weight maps on the latent grid and the weighted MSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cospeech.errors import InputError
from cospeech.pose import schema
from cospeech.train.region_weights import check_region_weights, region_weight_maps, weighted_mse
from cospeech.train.stages.teacher import BUNDLED_VAE, Config, TeacherStage

SIZE = 64  # pixels; 8 x 8 latent tokens at space stride 8


def _face_at(points_per_frame: list[tuple[float, float]]) -> torch.Tensor:
    """Keypoints ``[1, F, 133, 3]`` with only the face landmarks present, all at one pixel
    per frame."""
    keypoints = np.zeros((1, len(points_per_frame), schema.NUM_KEYPOINTS, 3), np.float32)
    for t, (x, y) in enumerate(points_per_frame):
        keypoints[0, t, list(schema.FACE)] = (x, y, 1.0)
    return torch.from_numpy(keypoints)


def _plus(row: int, col: int, weight: float) -> np.ndarray:
    """Weights of a disc of radius one token around token (row, col): the token and its
    four edge neighbours (the diagonal ones' centres are sqrt(2) tokens away)."""
    out = np.ones((SIZE // 8, SIZE // 8), np.float32)
    for r, c in ((row, col), (row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
        out[r, c] = 1 + weight
    return out


def test_weight_map_is_the_dilated_face_on_the_latent_grid_of_each_latent_frame():
    # Frame 0 -> latent 0; frames 1-4 -> latent 1; frames 5-8 -> latent 2.
    where = [(20.0, 20.0)] + [(44.0, 28.0)] * 4 + [(12.0, 44.0)] * 4
    maps = region_weight_maps(_face_at(where), (SIZE, SIZE), {"face": 3.0}, 4, 8)
    assert maps.shape == (1, 1, 3, 8, 8)
    np.testing.assert_array_equal(maps[0, 0, 0].numpy(), _plus(2, 2, 3.0))
    np.testing.assert_array_equal(maps[0, 0, 1].numpy(), _plus(3, 5, 3.0))
    np.testing.assert_array_equal(maps[0, 0, 2].numpy(), _plus(5, 1, 3.0))


def test_a_latent_frame_weights_the_union_over_its_video_frames():
    where = [(20.0, 20.0), (20.0, 20.0), (20.0, 20.0), (20.0, 20.0), (44.0, 44.0)]
    maps = region_weight_maps(_face_at(where), (SIZE, SIZE), {"face": 2.0}, 4, 8)
    expected = np.maximum(_plus(2, 2, 2.0), _plus(5, 5, 2.0))
    np.testing.assert_array_equal(maps[0, 0, 1].numpy(), expected)


def test_regions_without_a_weight_and_the_background_weigh_one():
    maps = region_weight_maps(_face_at([(20.0, 20.0)]), (SIZE, SIZE), {"left_hand": 5.0}, 4, 8)
    assert torch.all(maps == 1)


def test_a_hand_over_the_face_takes_the_larger_of_the_two_weights():
    keypoints = _face_at([(20.0, 20.0)])
    keypoints[0, 0, list(schema.LEFT_HAND)] = torch.tensor([20.0, 20.0, 1.0])  # on the face
    keypoints[0, 0, list(schema.RIGHT_HAND)] = torch.tensor([44.0, 44.0, 1.0])  # elsewhere
    maps = region_weight_maps(
        keypoints, (SIZE, SIZE), {"face": 4.0, "left_hand": 1.0, "right_hand": 2.0}, 4, 8
    )
    expected = np.maximum(_plus(2, 2, 4.0), _plus(5, 5, 2.0))  # face wins where it overlaps
    np.testing.assert_array_equal(maps[0, 0, 0].numpy(), expected)
    hands_first = region_weight_maps(keypoints, (SIZE, SIZE), {"face": 1.0, "left_hand": 6.0}, 4, 8)
    np.testing.assert_array_equal(hands_first[0, 0, 0].numpy(), _plus(2, 2, 6.0))


def test_the_mouth_weight_covers_the_dilated_lips_and_replaces_the_face_weight_there():
    keypoints = _face_at([(20.0, 20.0)] * 5)
    keypoints[0, :, list(schema.MOUTH), :2] = torch.tensor([44.0, 44.0])
    face_only = region_weight_maps(keypoints, (SIZE, SIZE), {"face": 2.0}, 4, 8)
    maps = region_weight_maps(keypoints, (SIZE, SIZE), {"face": 2.0, "mouth": 9.0}, 4, 8)
    lips = _plus(5, 5, 9.0) > 1
    for frame in range(2):
        expected = face_only[0, 0, frame].numpy().copy()
        assert expected[2, 2] == 3.0 and expected[lips].min() == 3.0  # the face spans both
        expected[lips] = 10.0
        np.testing.assert_array_equal(maps[0, 0, frame].numpy(), expected)


def test_weighted_mse_is_the_plain_mse_for_equal_weights_and_the_masked_mse_for_a_mask():
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(2, 4, 3, 8, 8, generator=generator)
    target = torch.randn(2, 4, 3, 8, 8, generator=generator)
    ones = torch.full((2, 1, 3, 8, 8), 2.5)
    torch.testing.assert_close(
        weighted_mse(prediction, target, ones), F.mse_loss(prediction, target)
    )
    mask = torch.zeros(2, 1, 3, 8, 8)
    mask[:, :, 1, 2:5, 3] = 1
    inside = (prediction - target)[:, :, 1, 2:5, 3]
    torch.testing.assert_close(weighted_mse(prediction, target, mask), inside.square().mean())


@pytest.mark.parametrize(
    "weights",
    [
        {"nose": 1.0},
        {"mouth": -1.0},
        {"face": -1.0},
        {"face": "big"},
        {"face": True},
        [("face", 1.0)],
    ],
)
def test_bad_region_weights_are_one_clear_error(weights):
    with pytest.raises(InputError, match="region"):
        check_region_weights(weights, "stage teacher: region_weights")


def test_the_teacher_stage_checks_its_region_weights():
    vae = str(BUNDLED_VAE)  # the stage also checks its VAE folder
    with pytest.raises(InputError, match="unknown region"):
        TeacherStage(Config(region_weights={"nose": 2.0}, vae=vae))
    stage = TeacherStage(Config(region_weights={"face": 4}, vae=vae))
    assert stage.config.region_weights == {"face": 4.0}
