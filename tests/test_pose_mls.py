"""Rigid MLS (pose/mls.py) against closed forms and the paper's formulas, and the per-region
reference warp (pose/warp.py) on a synthetic image with coloured regions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cospeech.errors import InputError
from cospeech.pose import schema as s
from cospeech.pose.mls import grid_points, mls_field, rigid_mls, upsample_field
from cospeech.pose.warp import WARP_REGIONS, WarpConfig, warp_map, warp_reference
from pose_fixture import closed_mouth, upright_keypoints

# float64 arithmetic on coordinates of a few hundred pixels: a few ulps of 256 (~1e-13)
# per operation; 1e-9 px leaves orders of magnitude of room and still catches any real error.
ATOL64 = 1e-9
# Dense fields are float32: 256 px * 2^-23 ~ 3e-5 px per rounding, a few roundings.
ATOL32 = 2e-4


def _rotation(angle: float) -> np.ndarray:
    c, s_ = np.cos(angle), np.sin(angle)
    return np.array([[c, -s_], [s_, c]])


def _controls(rng: np.random.Generator, k: int = 6) -> np.ndarray:
    return rng.uniform(20, 230, size=(k, 2))


def _paper_rigid_mls(v: np.ndarray, p: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    """Schaefer et al. 2006, Sec. 2.2, literally, for one point: the A_i matrices, fvec and
    f_r(v) = |v - p*| fvec / |fvec| + q* (row vectors, (x, y)^perp = (-y, x))."""

    def perp(u: np.ndarray) -> np.ndarray:
        return np.array([-u[1], u[0]])

    w = 1.0 / np.sum((p - v) ** 2, axis=1) ** alpha
    p_star = (w[:, None] * p).sum(0) / w.sum()
    q_star = (w[:, None] * q).sum(0) / w.sum()
    d = v - p_star
    fvec = np.zeros(2)
    for i in range(len(p)):
        hp, hq = p[i] - p_star, q[i] - q_star
        left = np.stack([hp, -perp(hp)])  # rows hat p_i, -hat p_i^perp
        right = np.stack([d, -perp(d)])
        a_i = w[i] * left @ right.T
        fvec += hq @ a_i
    return np.linalg.norm(d) * fvec / np.linalg.norm(fvec) + q_star


def test_identity_controls_give_the_identity():
    rng = np.random.default_rng(0)
    p = _controls(rng)
    v = rng.uniform(0, 256, size=(500, 2))
    np.testing.assert_allclose(rigid_mls(v, p, p), v, rtol=0, atol=ATOL64)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_rigid_controls_give_that_rigid_transform_everywhere(alpha):
    # q_i = R p_i + t makes hat q_i = R hat p_i, so theta(v) is R's angle and
    # q* = R p* + t at every v: f(v) = R v + t exactly (up to float64 rounding).
    rng = np.random.default_rng(1)
    p = _controls(rng)
    rot, t = _rotation(0.7), np.array([13.0, -21.5])
    q = p @ rot.T + t
    v = rng.uniform(-50, 300, size=(1000, 2))
    np.testing.assert_allclose(rigid_mls(v, p, q, alpha), v @ rot.T + t, rtol=0, atol=ATOL64)


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_matches_the_papers_matrix_form_point_by_point(alpha):
    rng = np.random.default_rng(2)
    p = _controls(rng, 7)
    q = p + rng.normal(0, 15, size=p.shape)  # a non-rigid deformation
    v = rng.uniform(0, 256, size=(200, 2))
    slow = np.stack([_paper_rigid_mls(x, p, q, alpha) for x in v])
    # Two float64 evaluation orders of the same formula: relative 1e-12 of ~256 px values.
    np.testing.assert_allclose(rigid_mls(v, p, q, alpha), slow, rtol=1e-12, atol=ATOL64)


def test_control_points_map_to_their_targets():
    rng = np.random.default_rng(3)
    p = _controls(rng)
    q = p + rng.normal(0, 10, size=p.shape)
    np.testing.assert_array_equal(rigid_mls(p, p, q), q)  # the on-control branch copies q_i
    # Just off a control the map is continuous: within 1e-3 px of p_i, within ~1e-3 px of q_i
    # (rigid locally: the displacement of the point is rotated, not stretched).
    near = rigid_mls(p + 1e-3, p, q)
    assert np.abs(near - q).max() < 3e-3


def test_degenerate_controls():
    v = np.array([[10.0, 20.0], [100.0, 5.0]])
    np.testing.assert_array_equal(rigid_mls(v, np.zeros((0, 2)), np.zeros((0, 2))), v)
    one = rigid_mls(v, [[50.0, 50.0]], [[53.0, 46.0]])
    np.testing.assert_allclose(one, v + [3.0, -4.0], rtol=0, atol=ATOL64)
    # All controls on one point: no rotation is defined, the centroids' translation is used.
    same = rigid_mls(v, [[50.0, 50.0]] * 3, [[60.0, 40.0], [60.0, 40.0], [60.0, 40.0]])
    np.testing.assert_allclose(same, v + [10.0, -10.0], rtol=0, atol=ATOL64)


def test_bad_controls_are_one_line_errors():
    v = np.zeros((3, 2))
    with pytest.raises(InputError, match="2 source but 3 target"):
        rigid_mls(v, np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(InputError, match="alpha"):
        rigid_mls(v, np.ones((2, 2)), np.ones((2, 2)), alpha=0.0)
    with pytest.raises(InputError, match="finite"):
        rigid_mls(v, [[np.nan, 0.0]], [[0.0, 0.0]])


def test_grid_one_field_is_the_pointwise_mls():
    rng = np.random.default_rng(4)
    p = _controls(rng)
    q = p + rng.normal(0, 10, size=p.shape)
    field = mls_field(p, q, 40, 56, grid=1)
    centres = grid_points(40, 56, 1)
    exact = rigid_mls(centres.reshape(-1, 2), p, q).reshape(centres.shape)
    np.testing.assert_allclose(field, exact, rtol=0, atol=ATOL32)


def test_upsampling_is_exact_for_affine_fields():
    # Bilinear interpolation reproduces affine functions, so an affine field (the
    # displacement of any rigid transform) survives any grid exactly (up to float32).
    nodes = grid_points(37, 50, 4)
    affine = nodes @ np.array([[0.3, -0.2], [0.1, 0.5]]) + [4.0, -7.0]
    full = upsample_field(affine, 4, 37, 50)
    np.testing.assert_allclose(
        full, grid_points(37, 50, 1) @ [[0.3, -0.2], [0.1, 0.5]] + [4.0, -7.0], atol=ATOL32
    )


@pytest.mark.parametrize(
    ("grid", "height", "width", "channels"), [(4, 37, 50, 3), (3, 40, 29, 2), (5, 33, 33, 6)]
)
def test_upsampling_matches_scipys_bilinear_interpolation(grid, height, width, channels):
    from scipy.interpolate import RegularGridInterpolator

    rng = np.random.default_rng(grid)
    nodes = grid_points(height, width, grid)
    coarse = rng.normal(0, 5, size=(*nodes.shape[:2], channels)).astype(np.float32)
    # Node (r, c) sits at pixel centre (r, c) * grid; pixel (i, j) at (i, j): linear in both.
    axes = (grid * np.arange(nodes.shape[0]), grid * np.arange(nodes.shape[1]))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    truth = RegularGridInterpolator(axes, coarse.astype(np.float64))((rows, cols))
    step = np.abs(np.diff(coarse, axis=0)).max() + np.abs(np.diff(coarse, axis=1)).max()
    # float32 rounding (~1e-5 of values ~15), or, for a grid that is not a power of two,
    # OpenCV versions that round the weights to 1/32: within 1/64 of a node step. An
    # alignment error of half a pixel would be ~step / (2 * grid), far above either.
    tolerance = 1e-4 if grid in (1, 2, 4, 8, 16, 32) else step / 64 + 1e-4
    np.testing.assert_allclose(upsample_field(coarse, grid, height, width), truth, rtol=0,
                               atol=tolerance)  # fmt: skip


@pytest.mark.parametrize("grid", [2, 4, 8])
def test_coarse_grid_error_bound(grid):
    # Linear interpolation between nodes h apart errs by at most h^2/8 max|f''|; bilinear
    # (tensor product, each factor a convex combination) by h^2/8 (max|D_xx| + max|D_yy|).
    # The second derivatives are estimated by central differences of the exact field at
    # 1 px; that averages f'' over 2 px and can miss a peak by a little: 25 % slack.
    p = np.array([[60, 60], [128, 128], [200, 90], [180, 200]], float)
    q = np.array([[60, 60], [128, 128], [170, 60], [210, 170]], float)
    size = 256
    exact = mls_field(p, q, size, size, grid=1).astype(np.float64)
    approx = mls_field(p, q, size, size, grid=grid).astype(np.float64)
    disp = exact - grid_points(size, size, 1)
    dxx = np.abs(disp[:, 2:] - 2 * disp[:, 1:-1] + disp[:, :-2]).max()
    dyy = np.abs(disp[2:] - 2 * disp[1:-1] + disp[:-2]).max()
    bound = grid**2 / 8 * (dxx + dyy)
    assert np.abs(approx - exact).max() <= 1.25 * bound + ATOL32
    assert bound < 0.02 * grid**2  # the test deformation is not trivially flat


# ---- per-region warp --------------------------------------------------------------------

SIZE = 256
GREY, RED, GREEN, BLUE = (128, 128, 128), (220, 30, 30), (30, 200, 30), (30, 30, 200)


def _hull_mask(points: np.ndarray, size: int = SIZE, erode: int = 0) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    if erode:
        mask = cv2.erode(mask, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return mask.astype(bool)


def _painted(kp: np.ndarray) -> np.ndarray:
    """Grey background, blue torso, red face, green left hand (drawn independently of the
    warp's own region rasteriser)."""
    img = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    torso = [s.LEFT_SHOULDER, s.RIGHT_SHOULDER, s.RIGHT_HIP, s.LEFT_HIP]
    img[_hull_mask(kp[torso, :2])] = BLUE
    img[_hull_mask(kp[list(s.FACE), :2])] = RED
    img[_hull_mask(kp[list(s.LEFT_HAND), :2])] = GREEN
    return img


def _shift_left_hand(kp: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    moved = kp.copy()
    moved[list(s.LEFT_HAND), :2] += offset
    return moved


def test_identity_pose_gives_the_identity_warp():
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    img = _painted(kp)
    out = warp_reference(img, kp, kp)
    np.testing.assert_allclose(out.source, grid_points(SIZE, SIZE, 1), rtol=0, atol=ATOL32)
    assert out.valid.all()
    # remap positions are quantised to 1/32 px: offsets of ~1e-5 px round to the pixel itself.
    np.testing.assert_array_equal(out.image, img)


def test_translated_hand_moves_the_hand_and_leaves_the_face():
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    offset = (-40.0, 15.0)
    target = _shift_left_hand(kp, offset)
    img = _painted(kp)
    out = warp_reference(img, kp, target)

    new_hand = _hull_mask(target[list(s.LEFT_HAND), :2], erode=2)
    assert (out.image[new_hand] == GREEN).all()
    assert out.valid[new_hand].all()
    # The hand's MLS is exactly the translation (translated controls); inside its hull the
    # hand's soft mask is >= 0.99 (the hull is dilated by 10 px, softened by a 3.8 px
    # Gaussian), and the <= 1 % left to the arm moves by at most |offset| ~ 43 px less.
    source_of_hand = grid_points(SIZE, SIZE, 1)[new_hand] - offset
    assert np.abs(out.source[new_hand] - source_of_hand).max() < 0.01 * np.hypot(*offset)

    face = _hull_mask(kp[list(s.FACE), :2])
    np.testing.assert_array_equal(out.image[face], img[face])
    assert out.valid[face].all()

    # Where the hand was and no region is now, the reference shows the hand, not the
    # background behind it: disoccluded, not valid.
    old_hand = _hull_mask(kp[list(s.LEFT_HAND), :2], erode=2)
    # The hand's region reaches its hull's margin (0.04 * 256 = 10 px) plus the feathering
    # and the 4 px grid: pixels within 16 px of the new hull count as hand.
    near_new_hand = cv2.dilate(
        _hull_mask(target[list(s.LEFT_HAND), :2]).astype(np.uint8), np.ones((33, 33), np.uint8)
    ).astype(bool)
    uncovered = old_hand & ~near_new_hand & (img == GREEN).all(-1)
    arm = np.zeros((SIZE, SIZE), np.uint8)
    elbow, wrist = kp[s.LEFT_ELBOW, :2], kp[s.LEFT_WRIST, :2]
    cv2.line(arm, tuple(np.round(elbow).astype(int)), tuple(np.round(wrist).astype(int)), 1, 40)
    uncovered &= ~arm.astype(bool)  # the forearm region stays (the wrist did not move)
    assert uncovered.sum() > 50
    assert not out.valid[uncovered].any()


def test_a_hand_that_left_the_chest_leaves_the_chest_under_it_unknown():
    # In the photo the left hand rests on the chest; in the target it is back out at the
    # side. The chest where the hand was is torso in the target, so no background rule
    # applies: without the occlusion rule it shows the photo's hand there (a ghost hand);
    # with it, those pixels are not valid (the model paints them).
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    torso = [s.LEFT_SHOULDER, s.RIGHT_SHOULDER, s.RIGHT_HIP, s.LEFT_HIP]
    chest = kp[torso, :2].mean(axis=0)
    hand = list(s.LEFT_HAND)
    on_chest = _shift_left_hand(kp, tuple(chest - kp[hand, :2].mean(axis=0)))
    img = _painted(on_chest)
    old_hand = _hull_mask(on_chest[hand, :2], erode=2) & (img == GREEN).all(-1)
    far_from_new_hand = ~cv2.dilate(
        _hull_mask(kp[hand, :2]).astype(np.uint8), np.ones((33, 33), np.uint8)
    ).astype(bool)
    chest_now = _hull_mask(kp[torso, :2], erode=12) & old_hand & far_from_new_hand
    assert chest_now.sum() > 50
    ghost = warp_reference(img, on_chest, kp, config=WarpConfig(occlusion=False))
    assert ghost.valid[chest_now].all() and (ghost.image[chest_now] == GREEN).all()
    out = warp_reference(img, on_chest, kp)
    assert not out.valid[chest_now].any()
    # The rest of the chest, and the face, are the photo's as before.
    rest = (
        _hull_mask(kp[torso, :2], erode=12)
        & ~cv2.dilate(old_hand.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
        & far_from_new_hand
    )
    assert rest.sum() > 500 and out.valid[rest].all()
    np.testing.assert_array_equal(out.valid, ghost.valid & out.valid)  # only ever removes


def test_what_hides_what():
    from cospeech.pose.warp import _in_front

    names = tuple(WARP_REGIONS)  # torso, left_arm, right_arm, face, left_hand, right_hand
    hides = _in_front(names)
    label = {name: 1 + i for i, name in enumerate(names)}
    assert not hides[0].any()  # the background: judged by the disocclusion rule instead
    assert not hides[:, label["face"]].any()  # the face's margin spans the neck and hair
    expected = {
        "torso": {"left_arm", "right_arm", "left_hand", "right_hand"},
        "left_arm": {"right_arm", "left_hand", "right_hand"},
        "right_arm": {"left_hand", "right_hand"},
        "face": {"left_hand", "right_hand"},
        "left_hand": {"right_hand"},
        "right_hand": set(),
    }
    for behind, fronts in expected.items():
        assert {n for n in names if hides[label[behind], label[n]]} == fronts


def test_whole_pose_rigid_motion_moves_everything_rigidly():
    # Every region's controls moved by one rotation + translation: every region's MLS is
    # that transform, the blend of equal maps is the map, and with the torso's motion as the
    # background it holds everywhere; its displacement is affine, which bilinear upsampling
    # keeps exactly (float32 tolerance).
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    rot, t = _rotation(0.1), np.array([6.0, -4.0])
    centre = np.array([128.0, 128.0])
    target = kp.copy()
    target[:, :2] = (kp[:, :2] - centre) @ rot.T + centre + t
    warp = warp_map(kp, target, SIZE, SIZE, config=WarpConfig(background="torso"))
    # Backward map: target pixel x comes from R^-1 (x - centre - t) + centre.
    expected = (grid_points(SIZE, SIZE, 1) - centre - t) @ rot + centre
    np.testing.assert_allclose(warp.source, expected, rtol=0, atol=ATOL32)


def test_missing_hips_let_the_chest_move_with_the_shoulders():
    # An upper-body photo without hips: stand-in hips below the shoulders make the torso a
    # body, not a band along the shoulders, so a point on the chest follows the shoulders.
    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    kp[[s.LEFT_HIP, s.RIGHT_HIP], 2] = 0.0
    target = kp.copy()
    target[:, 1] -= 10.0  # everything 10 px up
    warp = warp_map(kp, target, SIZE, SIZE)
    shoulder_y = kp[[s.LEFT_SHOULDER, s.RIGHT_SHOULDER], 1].mean()
    chest = (int(shoulder_y + 50), SIZE // 2)  # (row, column), 50 px under the shoulders
    np.testing.assert_allclose(
        warp.source[chest], [chest[1] + 0.5, chest[0] + 0.5 + 10.0], atol=ATOL32
    )
    assert warp.valid[chest]


def test_non_square_sizes_that_do_not_divide_the_grid():
    kp = upright_keypoints(250, 203).astype(np.float64)
    target = _shift_left_hand(kp, (-10.0, 0.0))
    img = np.random.default_rng(5).integers(0, 256, (203, 250, 3), dtype=np.uint8)
    out = warp_reference(img, kp, target)
    assert out.image.shape == img.shape and out.valid.shape == img.shape[:2]
    assert out.source.shape == (203, 250, 2)


def test_a_batch_of_poses_warps_as_each_pose_alone():
    from cospeech.pose.warp import BATCH, warp_references

    kp = upright_keypoints(SIZE, SIZE).astype(np.float64)
    img = _painted(kp)
    rng = np.random.default_rng(7)
    targets = np.stack(
        [_shift_left_hand(kp, tuple(rng.normal(0, 12, 2))) for _ in range(BATCH + 3)]
    )
    targets[..., :2] += rng.normal(0, 2, (len(targets), 1, 2))  # the whole body sways too
    batch = warp_references(img, kp, targets)
    assert len(batch) == len(targets)
    for target, warped in zip(targets, batch, strict=True):
        alone = warp_reference(img, kp, target)
        # The same arithmetic per frame (the batch only shares the raster's bounding box,
        # whose tokens are tested one by one alike): identical results.
        np.testing.assert_array_equal(warped.source, alone.source)
        np.testing.assert_array_equal(warped.valid, alone.valid)
        np.testing.assert_array_equal(warped.image, alone.image)


def test_bad_warp_inputs_are_one_line_errors():
    kp = upright_keypoints(SIZE, SIZE)
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    with pytest.raises(InputError, match=r"\[H, W, 3\]"):
        warp_reference(img[..., 0], kp, kp)
    with pytest.raises(InputError, match="target pose frame"):
        warp_reference(img, kp, kp[:10])
    with pytest.raises(InputError, match="background"):
        WarpConfig(background="blur")
    with pytest.raises(InputError, match="grid"):
        WarpConfig(grid=0)
    with pytest.raises(InputError, match="face margin"):
        WarpConfig(region_margins=(("face", -1.0),))
    no_torso = {"face": WARP_REGIONS["face"]}
    with pytest.raises(InputError, match="needs a region named torso"):
        warp_map(kp, kp, SIZE, SIZE, no_torso, WarpConfig(background="torso"))


def test_an_opened_mouth_is_invalid_inside_the_inner_lips_only():
    open_mouth = upright_keypoints(SIZE, SIZE).astype(np.float64)
    closed = closed_mouth(open_mouth)
    img = _painted(closed)
    opening = _hull_mask(open_mouth[list(s.FACE_INNER_LIPS), :2])
    assert opening.sum() > 20  # the fixture's mouth is open by several pixels
    out = warp_reference(img, closed, open_mouth)
    # The rest of the face (the opening dilated by the polygon's rasterisation left out)
    # stays valid (its rim may uncover a little background: the older rule), and the
    # opening itself, whose source lies on the closed lips' line, is not.
    ring = cv2.dilate(opening.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    face = _hull_mask(open_mouth[list(s.FACE), :2], erode=4)
    assert out.valid[face & ~ring].all()
    core = cv2.erode(opening.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert core.any() and not out.valid[core].any()
    # The same open mouth in the photo: its interior is shown, nothing is invalid.
    assert warp_reference(_painted(open_mouth), open_mouth, open_mouth).valid.all()
