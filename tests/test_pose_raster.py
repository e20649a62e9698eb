"""Regions on the latent token grid: placement, dilation, time union, overlaps, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial import ConvexHull

from cospeech.errors import InputError
from cospeech.latent_geometry import latent_frame_ranges, latent_frames
from cospeech.pose import BODY_REGIONS, PoseSequence, region_bits, region_token_masks
from cospeech.pose import schema as s
from cospeech.pose.raster import DEFAULT_MARGIN
from pose_fixture import upright_keypoints, upright_pose

W, H = 832, 480
CELL = 16  # space_stride 8 x patch 2
BITS = region_bits(BODY_REGIONS)
FACE, LHAND, RHAND = BITS["face"], BITS["left_hand"], BITS["right_hand"]
ARMS, SHOULDERS, BODY = BITS["arms"], BITS["shoulders"], BITS["body"]


def labels_of(pose, *args, **kwargs) -> np.ndarray:
    """Region bitmasks with each hand its own region (bits distinguish every region)."""
    return region_token_masks(pose, *args, regions=BODY_REGIONS, **kwargs)


def _in(lab: np.ndarray, bit: int) -> np.ndarray:
    """Where region ``bit`` covers the token (other regions may cover it too)."""
    return (lab & bit) != 0


def _token(xy) -> tuple[int, int]:
    """(row, col) of the token containing pixel position ``xy``."""
    return int(xy[1] // CELL), int(xy[0] // CELL)


def _centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Token centres in token units: x [h, w], y [h, w]."""
    gy, gx = np.mgrid[0:h, 0:w]
    return gx + 0.5, gy + 0.5


def _only(kp: np.ndarray, keep) -> np.ndarray:
    """Keypoints with every confidence outside ``keep`` set to 0."""
    out = kp.copy()
    mask = np.zeros(s.NUM_KEYPOINTS, bool)
    mask[list(keep)] = True
    out[..., ~mask, 2] = 0.0
    return out


def test_shapes_and_latent_frames():
    for frames, latents in [(1, 1), (2, 2), (5, 2), (6, 3), (9, 3), (81, 21)]:
        assert latent_frames(frames, partial=True) == latents
        lab = labels_of(upright_pose(frames))
        assert lab.shape == (latents, H // CELL, W // CELL) and lab.dtype == np.int64
    assert latent_frame_ranges(10) == [(0, 1), (1, 5), (5, 9), (9, 10)]
    assert latent_frame_ranges(3, time_stride=1) == [(0, 1), (1, 2), (2, 3)]
    assert labels_of(upright_pose(3), space_stride=16, patch=(1, 1, 2)).shape == (2, 30, 26)


def test_labels_land_under_keypoints():
    pose = upright_pose(1)
    lab = labels_of(pose)[0]
    kp = pose.keypoints[0]
    for i in s.LEFT_HAND:
        assert lab[_token(kp[i])] & LHAND, i
    for i in s.RIGHT_HAND:
        assert lab[_token(kp[i])] & RHAND, i
    for i in (*s.FACE, s.NOSE, s.LEFT_EYE, s.RIGHT_EYE, s.LEFT_EAR, s.RIGHT_EAR):
        assert lab[_token(kp[i])] & FACE, i
    for i in (s.LEFT_ELBOW, s.RIGHT_ELBOW, s.LEFT_SHOULDER, s.RIGHT_SHOULDER):
        assert lab[_token(kp[i])] & ARMS, i
    for i in (s.LEFT_SHOULDER, s.RIGHT_SHOULDER):
        assert lab[_token(kp[i])] & SHOULDERS and lab[_token(kp[i])] & BODY, i  # overlaps kept
    neck = (kp[s.LEFT_SHOULDER, :2] + kp[s.RIGHT_SHOULDER, :2]) / 2
    assert lab[_token(neck)] & SHOULDERS
    belly = (kp[s.LEFT_HIP, :2] + kp[s.RIGHT_HIP, :2] + neck) / 3 - [0, 20]
    assert lab[_token(belly)] == BODY
    for corner in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert lab[corner] == 0
    assert np.bitwise_or.reduce(lab.ravel()) == sum(BITS.values())  # every region present


@pytest.mark.parametrize("margin", [0.0, 0.5, 1.0, 2.5])
@pytest.mark.parametrize("patch", [(1, 2, 2), (1, 1, 2)])
def test_single_point_part_is_a_disc(margin, patch):
    kp = _only(upright_keypoints(), [s.LEFT_HAND[0]])  # only the left hand's wrist point
    kp[s.LEFT_HAND[0], :2] = [403.0, 211.0]
    lab = labels_of(PoseSequence(kp[None], 25, W, H), patch=patch, margin=margin)[0]
    cell_w, cell_h = 8 * patch[2], 8 * patch[1]
    cx, cy = _centres(*lab.shape)
    dist = np.hypot(cx - 403.0 / cell_w, cy - 211.0 / cell_h)
    np.testing.assert_array_equal(lab == LHAND, dist <= margin)
    assert set(np.unique(lab)) <= {0, LHAND}
    if margin == 0.0:
        assert not lab.any()  # a point off every token centre covers none ...
    if margin >= DEFAULT_MARGIN:  # ... the default covers the token the point lies in
        assert lab[int(211.0 // cell_h), int(403.0 // cell_w)] == LHAND


def test_two_point_part_is_a_capsule():
    kp = _only(upright_keypoints(), [s.LEFT_SHOULDER, s.RIGHT_SHOULDER])
    a, b = np.array([200.0, 150.0]) / CELL, np.array([520.0, 260.0]) / CELL
    kp[s.LEFT_SHOULDER, :2], kp[s.RIGHT_SHOULDER, :2] = a * CELL, b * CELL
    margin = 1.7
    lab = labels_of(PoseSequence(kp[None], 25, W, H), margin=margin)[0]
    # Only the shoulders are confident: arms are two discs, body a capsule, shoulders on top.
    cx, cy = _centres(*lab.shape)
    p = np.stack([cx, cy], -1)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)
    to_a, to_b = np.linalg.norm(p - a, axis=-1), np.linalg.norm(p - b, axis=-1)
    near_end = (to_a <= margin) | (to_b <= margin)
    # Body = the quadrilateral of two points = the same capsule as the shoulders.
    np.testing.assert_array_equal(_in(lab, SHOULDERS), dist <= margin)
    np.testing.assert_array_equal(_in(lab, BODY), dist <= margin)
    np.testing.assert_array_equal(_in(lab, ARMS), near_end)
    assert not (lab & (FACE | LHAND | RHAND)).any()


@pytest.mark.parametrize("seed", range(4))
def test_hull_part_matches_independent_hull(seed):
    """The face alone (random points, some missing): compare with scipy's hull and
    OpenCV's signed distance to it."""
    rng = np.random.default_rng(seed)
    kp = _only(upright_keypoints(), s.FACE)
    kp[list(s.FACE), :2] = rng.uniform([200, 100], [600, 380], (len(s.FACE), 2))
    kp[rng.choice(s.FACE, 30, replace=False), 2] = rng.choice([0.0, 0.1], 30)
    margin = 1.3
    lab = labels_of(PoseSequence(kp[None], 25, W, H), margin=margin)[0]

    present = kp[list(s.FACE)][kp[list(s.FACE), 2] >= 0.3][:, :2] / CELL
    hull = present[ConvexHull(present).vertices].astype(np.float32)
    cx, cy = _centres(*lab.shape)
    centres = np.stack([cx.ravel(), cy.ravel()], 1).tolist()
    signed = np.array([cv2.pointPolygonTest(hull, tuple(c), True) for c in centres])
    signed = signed.reshape(lab.shape)  # > 0 inside, < 0 outside, in token units
    clear = np.abs(signed + margin) > 1e-3  # leave out float ties on the boundary
    np.testing.assert_array_equal(_in(lab, FACE)[clear], (signed >= -margin)[clear])
    assert _in(lab, FACE).sum() > 50


def test_collinear_points_make_a_capsule_not_a_strip():
    kp = _only(upright_keypoints(), s.RIGHT_HAND)
    line = np.linspace([100.0, 104.0], [300.0, 104.0], len(s.RIGHT_HAND))  # a horizontal line
    kp[list(s.RIGHT_HAND), :2] = line
    lab = labels_of(PoseSequence(kp[None], 25, W, H), margin=0.5)[0]
    rows = np.flatnonzero(_in(lab, RHAND).any(axis=1))
    cols = np.flatnonzero(_in(lab, RHAND).any(axis=0))
    assert rows.tolist() == [6]  # centre row 6.5 is 0 tokens from y = 6.5; rows 5, 7 are 1 away
    assert cols.min() == 100 // 16 and cols.max() == 300 // 16


def test_latent_frame_is_union_of_its_frames():
    base = _only(upright_keypoints(), [s.LEFT_HAND[0]])
    positions = [(24, 24), (104, 24), (184, 24), (264, 24), (344, 24), (24, 200), (24, 300)]
    kp = np.repeat(base[None], len(positions), axis=0)
    for t, xy in enumerate(positions):
        kp[t, s.LEFT_HAND[0], :2] = xy
    lab = labels_of(PoseSequence(kp, 25, W, H), margin=0.5)
    assert lab.shape[0] == 3  # frame 0 | frames 1-4 | frames 5-6
    cells = [[_token(positions[t]) for t in ts] for ts in ([0], [1, 2, 3, 4], [5, 6])]
    for latent, expected in enumerate(cells):
        got = sorted(map(tuple, np.argwhere(lab[latent] == LHAND).tolist()))
        assert got == sorted(expected), latent  # margin 0.5: only the token under each point


def test_temporal_patch_merges_latent_frames():
    pose = upright_pose(13)  # 4 latent frames
    rng = np.random.default_rng(0)
    pose.keypoints[..., :2] += rng.normal(0, 20, pose.keypoints[..., :2].shape).astype(np.float32)
    single = labels_of(pose)
    paired = labels_of(pose, patch=(2, 2, 2))
    assert paired.shape == (2, *single.shape[1:])
    # The union of the two latent frames' regions: the OR of their bitmasks.
    np.testing.assert_array_equal(paired, single[0::2] | single[1::2])
    with pytest.raises(InputError, match="temporal"):
        labels_of(pose, patch=(3, 2, 2))


def test_hand_over_face_is_in_both():
    kp = upright_keypoints()
    nose = kp[s.NOSE, :2].copy()
    shift = nose - kp[s.LEFT_HAND[9], :2]  # middle finger base onto the nose
    kp[list(s.LEFT_HAND), :2] += shift
    lab = labels_of(PoseSequence(kp[None], 25, W, H))[0]
    assert lab[_token(nose)] & LHAND and lab[_token(nose)] & FACE
    for i in s.LEFT_HAND:
        assert lab[_token(kp[i])] & LHAND
    assert (lab == FACE).any()  # the rest of the face is face only


def test_overlapping_regions_keep_every_bit():
    """Every region alone: the full bitmask is the OR of what each covers on its own."""
    kp = upright_keypoints()
    full = labels_of(PoseSequence(kp[None], 25, W, H), margin=2.0)[0]
    expected = np.zeros_like(full)
    covered = []
    for name, parts in BODY_REGIONS.items():  # what each region covers on its own
        keep = {i for part in parts for i in part}
        alone = labels_of(PoseSequence(_only(kp, keep)[None], 25, W, H), margin=2.0)[0]
        covered.append(_in(alone, BITS[name]))
        expected |= np.where(covered[-1], BITS[name], 0)
    np.testing.assert_array_equal(full, expected)
    assert (sum(m.astype(int) for m in covered) > 1).sum() > 20  # overlaps were exercised


def test_low_confidence_and_missing_parts():
    kp = upright_keypoints()
    kp[list(s.LEFT_HAND), 2] = 0.2  # below the default min_confidence 0.3
    kp[list(s.RIGHT_HAND), 2] = 0.0
    pose = PoseSequence(kp[None], 25, W, H)
    lab = labels_of(pose)
    assert not _in(lab, LHAND).any() and not _in(lab, RHAND).any()
    assert _in(labels_of(pose, min_confidence=0.1), LHAND).any()


def test_margin_mapping():
    pose = upright_pose(1)
    wide = labels_of(pose, margin={"face": 3.0})
    base = labels_of(pose)
    assert _in(wide, FACE).sum() > _in(base, FACE).sum()
    np.testing.assert_array_equal(_in(wide, LHAND), _in(base, LHAND))  # others: the default
    with pytest.raises(InputError, match="unknown"):
        labels_of(pose, margin={"tail": 1.0})
    with pytest.raises(InputError):
        labels_of(pose, margin=-1.0)
    with pytest.raises(InputError):
        labels_of(pose, margin=float("nan"))


def test_pixel_resolution():
    pose = upright_pose(3, width=104, height=60)
    lab = labels_of(pose, time_stride=1, space_stride=1, patch=(1, 1, 1), margin=2.0)
    assert lab.shape == (3, 60, 104)
    kp = pose.keypoints[0]
    assert lab[0, int(kp[s.NOSE, 1]), int(kp[s.NOSE, 0])] & FACE


def test_points_outside_the_frame():
    kp = upright_keypoints()
    kp[list(s.LEFT_HAND), :2] += [2000, 3000]  # far off: nothing, and no error
    kp[s.LEFT_HIP, :2] = [500, 700]  # hips below the frame still shape the body
    lab = labels_of(PoseSequence(kp[None], 25, W, H))
    assert not _in(lab, LHAND).any()
    assert _in(lab[0, -1], BODY).any()


@pytest.mark.parametrize(
    "kwargs",
    [dict(space_stride=7), dict(patch=(1, 2, 3)), dict(patch=(1, 2)), dict(patch=(1, 0, 2)),
     dict(space_stride=0), dict(time_stride=0)],
)  # fmt: skip
def test_bad_sizes(kwargs):
    with pytest.raises(InputError):
        labels_of(upright_pose(5), **kwargs)


def test_frame_size_must_divide():
    with pytest.raises(InputError, match="does not divide"):
        labels_of(upright_pose(2, width=840, height=480))
    with pytest.raises(InputError, match="does not divide"):
        labels_of(upright_pose(2, width=832, height=488))


def test_bad_pose():
    pose = upright_pose(2)
    pose.keypoints[1, 3, 0] = np.nan
    with pytest.raises(InputError):
        labels_of(pose)
    with pytest.raises(InputError):
        labels_of(upright_keypoints())  # an array, not a PoseSequence


def test_deterministic():
    pose = upright_pose(9)
    np.testing.assert_array_equal(labels_of(pose), labels_of(pose))


def test_keypoint_token_mask_is_the_dilated_hull_of_the_lips_and_checks_its_margin():
    from cospeech.pose.raster import keypoint_token_mask

    pose = upright_pose(5)
    mask = keypoint_token_mask(pose, s.MOUTH, margin=1.5)
    assert mask.shape == (2, H // CELL, W // CELL) and mask.dtype == bool
    # Latent 1 is the union over frames 1-4: an independent check with scipy's hull.
    gx, gy = _centres(H // CELL, W // CELL)
    centres = np.stack([gx.ravel(), gy.ravel()], 1)
    expected = np.zeros(gx.size, bool)
    for frame in range(1, 5):
        lips = pose.keypoints[frame, list(s.MOUTH), :2] / CELL
        hull = ConvexHull(lips)
        inside = np.all(centres @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
        edges = [(lips[a], lips[b]) for a, b in hull.simplices]
        near = np.zeros(gx.size, bool)
        for a, b in edges:
            t = np.clip(((centres - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
            near |= np.linalg.norm(centres - (a + t[:, None] * (b - a)), axis=1) <= 1.5
        expected |= inside | near
    assert 2 <= expected.sum() < 30  # a few tokens around the mouth
    np.testing.assert_array_equal(mask[1].ravel(), expected)
    with pytest.raises(InputError, match="margin"):
        keypoint_token_mask(pose, s.MOUTH, margin=-1.0)
