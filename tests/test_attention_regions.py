"""Region sets in the local mask (Eq. 3, "exists r"): overlaps keep every correspondence.

The reference is built region by region (each region rasterised on its own, then "some
region holds both tokens"), independent of the bitmask packing the plan uses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cospeech.attention import SparsePlan, input_aware_token_mask, sparse_attention
from cospeech.pose import ATTENTION_REGIONS, BODY_REGIONS, PoseSequence, region_bits
from cospeech.pose import region_token_masks as masks_of
from cospeech.pose import schema as s
from pose_fixture import upright_keypoints

W, H, CELL = 256, 160, 16  # 16 x 10 tokens per frame
ROWS, COLS = H // CELL, W // CELL
BITS = region_bits(ATTENTION_REGIONS)


def _hand_over_face_pose() -> PoseSequence:
    """Video frame 0 (latent 0): hands in front of the chest; frames 1-4 (latent 1): the
    left hand's middle-finger base on the nose, so the hand covers part of the face."""
    kp = np.repeat(upright_keypoints(W, H)[None], 5, axis=0)
    shift = kp[1, s.NOSE, :2] - kp[1, s.LEFT_HAND[9], :2]
    kp[1:, list(s.LEFT_HAND), :2] += shift
    return PoseSequence(kp, 25.0, W, H)


def _coverage(pose: PoseSequence) -> dict[str, np.ndarray]:
    """Each attention region rasterised alone: bool ``[T, h * w]``."""
    return {
        name: masks_of(pose, regions={name: parts}).reshape(2, -1) != 0
        for name, parts in ATTENTION_REGIONS.items()
    }


def _reference_mask(frame_mask: np.ndarray, coverage: dict[str, np.ndarray]) -> np.ndarray:
    """Eq. 3 + frame mask, literally: same frame, or frame pair kept and some r holds both."""
    frames, n = next(iter(coverage.values())).shape
    frame = np.repeat(np.arange(frames), n)
    shared = np.zeros((frames * n, frames * n), dtype=bool)
    for cov in coverage.values():
        flat = cov.reshape(-1)
        shared |= flat[:, None] & flat[None, :]
    return (frame[:, None] == frame[None, :]) | (
        frame_mask[frame[:, None], frame[None, :]] & shared
    )


def _token(latent: int, xy) -> int:
    return latent * ROWS * COLS + int(xy[1] // CELL) * COLS + int(xy[0] // CELL)


@pytest.fixture(scope="module")
def scene():
    pose = _hand_over_face_pose()
    regions = masks_of(pose)
    assert regions.shape == (2, ROWS, COLS)
    frame_mask = torch.ones(2, 2, dtype=torch.bool)
    return pose, regions, frame_mask, _coverage(pose)


def test_the_attention_regions_are_the_papers_with_one_hands_region():
    assert tuple(ATTENTION_REGIONS) == ("face", "hands", "arms", "shoulders", "body")
    assert set(ATTENTION_REGIONS["hands"]) == {s.LEFT_HAND, s.RIGHT_HAND}
    assert set(BODY_REGIONS) - set(ATTENTION_REGIONS) == {"left_hand", "right_hand"}


def test_bitmask_is_the_union_of_the_regions_rasterised_alone(scene):
    pose, regions, _, coverage = scene
    packed = sum(np.where(coverage[n], BITS[n], 0) for n in ATTENTION_REGIONS)
    np.testing.assert_array_equal(regions.reshape(2, -1), packed)
    nose = _token(1, pose.keypoints[1, s.NOSE]) - ROWS * COLS
    assert (
        regions[1].reshape(-1)[nose] & BITS["face"] and regions[1].reshape(-1)[nose] & BITS["hands"]
    )


@pytest.mark.parametrize("exact", [True, False])
def test_hand_over_face_keeps_both_correspondences(scene, exact):
    pose, regions, frame_mask, coverage = scene
    reference = _reference_mask(frame_mask.numpy(), coverage)
    np.testing.assert_array_equal(input_aware_token_mask(frame_mask, regions).numpy(), reference)
    plan = SparsePlan.build(frame_mask, regions, block_size=32, exact=exact)
    effective = plan.token_mask().numpy()
    if exact:
        np.testing.assert_array_equal(effective, reference)
    else:
        assert (effective >= reference).all()  # pooled: a superset

    nose = _token(1, pose.keypoints[1, s.NOSE])  # latent 1: hand and face
    face0 = _token(0, pose.keypoints[0, s.NOSE])  # latent 0: face only
    hand0 = _token(0, pose.keypoints[0, s.LEFT_HAND[9]])  # latent 0: hand only
    other_hand0 = _token(0, pose.keypoints[0, s.RIGHT_HAND[9]])
    regions_flat = regions.reshape(-1)
    assert regions_flat[face0] == BITS["face"]  # face only
    assert regions_flat[hand0] & BITS["hands"] and not regions_flat[hand0] & BITS["face"]
    for key in (face0, hand0, other_hand0):  # face-face, hand-hand, left hand-right hand
        assert reference[nose, key] and effective[nose, key]
    assert reference[face0, nose] and reference[hand0, nose]


def test_sparse_attention_runs_the_overlapping_mask(scene):
    _, regions, frame_mask, coverage = scene
    plan = SparsePlan.build(frame_mask, regions, block_size=32, exact=True)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, plan.num_tokens, 8, generator=generator) for _ in range(3))
    mask = torch.from_numpy(_reference_mask(frame_mask.numpy(), coverage))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # fp32, two summation orders over <= 320 keys: agreement to ~1e-6 relative
    torch.testing.assert_close(sparse_attention(q, k, v, plan, backend="gather"), expected,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_plan_sorts_by_bitmask_with_background_last(scene):
    _, regions, frame_mask, _ = scene
    plan = SparsePlan.build(frame_mask, regions, block_size=32)
    for t in range(2):
        values = plan.token_regions[t * ROWS * COLS : (t + 1) * ROWS * COLS]
        key = torch.where(values == 0, torch.iinfo(torch.int64).max, values)
        assert torch.all(key[1:] >= key[:-1])
    assert torch.equal(plan.frame_regions(), torch.from_numpy(regions.reshape(2, -1)))
