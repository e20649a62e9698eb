"""Rigid alignment error and the frame-similarity matrix, against independent solutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from cospeech.errors import InputError
from cospeech.pose import frame_similarity, pose_frame_similarity, rigid_alignment_error
from cospeech.pose import schema as s
from pose_fixture import upright_pose


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, si = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, si], [-si, c]])  # rows rotated by +angle


def _reference(a: np.ndarray, b: np.ndarray) -> float:
    """Independent solution: a 3D rotation from scipy with the z axis pinned (infinite
    weight) is a rotation about z, i.e. a proper 2D rotation; translation by centroids."""
    A, B = a - a.mean(0), b - b.mean(0)
    z = np.zeros((len(a), 1))
    vec_a = np.vstack([[0, 0, 1], np.hstack([A, z])])
    vec_b = np.vstack([[0, 0, 1], np.hstack([B, z])])
    weights = np.r_[np.inf, np.ones(len(a))]
    rot, _ = Rotation.align_vectors(vec_a, vec_b, weights=weights)
    moved = rot.apply(np.hstack([B, z]))
    assert np.allclose(moved[:, 2], 0)
    return float(np.linalg.norm(A - moved[:, :2]))


def _procrustes(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """scipy's orthogonal Procrustes (reflections allowed): (error, det of its R)."""
    A, B = a - a.mean(0), b - b.mean(0)
    R, _ = orthogonal_procrustes(B, A)
    return float(np.linalg.norm(A - B @ R)), float(np.linalg.det(R))


def test_rotated_translated_copy_is_zero():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.uniform(0, 800, (30, 2))
        b = _rotate(a, rng.uniform(-np.pi, np.pi)) + rng.uniform(-300, 300, 2)
        assert rigid_alignment_error(a, b) < 1e-9 * np.linalg.norm(a)
        assert rigid_alignment_error(b, a) < 1e-9 * np.linalg.norm(a)


@pytest.mark.parametrize("seed", range(10))
def test_matches_scipy_on_noisy_sets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    a = rng.normal(0, 100, (n, 2)) + 400
    b = _rotate(a, rng.uniform(-np.pi, np.pi)) + rng.normal(0, 50, 2)
    b += rng.normal(0, rng.uniform(0.1, 30), b.shape)
    ours = rigid_alignment_error(a, b)
    assert ours == pytest.approx(_reference(a, b), rel=1e-9, abs=1e-9)
    err, det = _procrustes(a, b)
    if det > 0:  # with a proper rotation, Procrustes solves the same problem
        assert ours == pytest.approx(err, rel=1e-9, abs=1e-9)
    else:  # reflections can only do better
        assert ours >= err - 1e-9


@pytest.mark.parametrize("seed", range(10))
def test_matches_scipy_on_unrelated_sets(seed):
    rng = np.random.default_rng(100 + seed)
    a, b = rng.normal(0, 50, (2, 25, 2))
    assert rigid_alignment_error(a, b) == pytest.approx(_reference(a, b), rel=1e-9)


def test_reflection_is_not_allowed():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 100, (20, 2))
    mirrored = a * [-1, 1] + 50  # a reflection: Procrustes undoes it, a rotation cannot
    err, det = _procrustes(a, mirrored)
    assert det < 0 and err < 1e-9
    ours = rigid_alignment_error(a, mirrored)
    assert ours > 10
    assert ours == pytest.approx(_reference(a, mirrored), rel=1e-9)


def test_scaling_is_not_allowed():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 100, (20, 2))
    centred = a - a.mean(0)
    # min_R ||A - 2 R A|| = ||A||, reached at R = I.
    assert rigid_alignment_error(a, 2 * a + 7) == pytest.approx(np.linalg.norm(centred))


def test_masked_points_are_left_out():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 100, (15, 2))
    b = _rotate(a, 0.7) + 20 + rng.normal(0, 3, a.shape)
    conf_a = rng.uniform(0.1, 1, 15)
    conf_b = rng.uniform(0.1, 1, 15)
    conf_a[[1, 4]] = 0.0
    conf_b[[4, 9]] = 0.0
    keep = np.ones(15, bool)
    keep[[1, 4, 9]] = False
    expected = _reference(a[keep], b[keep])
    assert rigid_alignment_error(a, b, conf_a, conf_b) == pytest.approx(expected, rel=1e-9)
    a2 = a.copy()
    a2[[1, 4, 9]] = 1e4  # wild values where masked change nothing
    assert rigid_alignment_error(a2, b, conf_a, conf_b) == pytest.approx(expected, rel=1e-9)
    # only one set's mask given
    assert rigid_alignment_error(a, b, conf_a) == pytest.approx(
        _reference(a[conf_a > 0], b[conf_a > 0]), rel=1e-9
    )


def test_degenerate_masks():
    a = np.array([[0.0, 0], [10, 0], [0, 10]])
    b = np.array([[5.0, 5], [50, 0], [0, 3]])
    assert rigid_alignment_error(a, b, [1, 0, 0], [1, 1, 1]) == 0.0  # one point: translate
    assert rigid_alignment_error(a, b, [1, 0, 0], [0, 1, 1]) == np.inf  # nothing shared


def test_symmetric_and_torch_input():
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 10, (2, 12, 2))
    value = rigid_alignment_error(a, b)
    assert rigid_alignment_error(b, a) == pytest.approx(value, rel=1e-12)
    assert rigid_alignment_error(torch.from_numpy(a).float(), torch.from_numpy(b)) == (
        pytest.approx(value, rel=1e-6)
    )


@pytest.mark.parametrize(
    ("a", "b"), [(np.zeros((5, 2)), np.zeros((4, 2))), (np.zeros((5, 3)), np.zeros((5, 3))),
                 (np.zeros(5), np.zeros(5))]
)  # fmt: skip
def test_rigid_bad_shapes(a, b):
    with pytest.raises(InputError):
        rigid_alignment_error(a, b)


def test_rigid_bad_values():
    a = np.zeros((5, 2))
    bad = a.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError):
        rigid_alignment_error(a, bad)
    with pytest.raises(InputError):
        rigid_alignment_error(a, a, conf_a=np.ones(4))


def _random_sequence(seed: int, frames: int = 12, points: int = 20):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 80, (points, 2))
    seq = np.stack(
        [_rotate(base + rng.normal(0, 10, base.shape), rng.uniform(-1, 1)) + rng.normal(0, 99, 2)
         for _ in range(frames)]
    )  # fmt: skip
    conf = rng.uniform(0, 1, (frames, points))
    conf[conf < 0.25] = 0.0
    return seq, conf


def test_matrix_matches_pairwise():
    seq, conf = _random_sequence(7)
    conf[3] = 0.0  # a frame with nothing
    conf[5] = 0.0
    conf[5, 0] = 0.8  # a frame with a single point
    sim = frame_similarity(seq, conf)
    assert sim.shape == (12, 12) and sim.dtype == np.float64
    for i in range(12):
        for j in range(12):
            shared = np.sum((conf[i] > 0) & (conf[j] > 0))
            frobenius = rigid_alignment_error(seq[i], seq[j], conf[i], conf[j])
            expected = 0.0 if i == j else frobenius / np.sqrt(max(shared, 1))  # RMS per point
            if np.isinf(expected):
                assert sim[i, j] == np.inf
            else:
                assert sim[i, j] == pytest.approx(expected, rel=1e-7, abs=1e-6), (i, j)
    # Exact by construction: the result is 0.5 * (rms + rms.T), and float addition is
    # commutative, so entry (i, j) and (j, i) are the same sum.
    assert np.array_equal(sim, sim.T)
    assert np.all(np.diag(sim) == 0)
    assert np.isinf(sim[3, np.arange(12) != 3]).all()


def test_matrix_without_confidence_matches_reference():
    seq, _ = _random_sequence(8, frames=6, points=9)
    sim = frame_similarity(seq)
    for i in range(6):
        for j in range(i + 1, 6):  # RMS over the 9 shared points
            assert sim[i, j] == pytest.approx(_reference(seq[i], seq[j]) / 3.0, rel=1e-7)


def test_matrix_is_invariant_to_per_frame_rigid_motion():
    seq, conf = _random_sequence(9)
    rng = np.random.default_rng(10)
    moved = np.stack(
        [_rotate(f, rng.uniform(-np.pi, np.pi)) + rng.uniform(-1e3, 1e3, 2) for f in seq]
    )
    np.testing.assert_allclose(
        frame_similarity(moved, conf), frame_similarity(seq, conf), rtol=1e-7, atol=1e-6
    )


def test_rigidly_moving_pose_is_all_zero():
    rng = np.random.default_rng(11)
    base = rng.uniform(0, 500, (40, 2))
    seq = np.stack([_rotate(base, 0.1 * t) + [3 * t, -2 * t] for t in range(8)])
    sim = frame_similarity(seq)
    spread = np.linalg.norm(base - base.mean(0))
    assert sim.max() < 1e-7 * spread  # the S^2 identity: a few 1e-8 of the point spread


def test_torch_in_torch_out():
    seq, conf = _random_sequence(12, frames=5)
    expected = frame_similarity(seq, conf)
    out = frame_similarity(torch.from_numpy(seq), torch.from_numpy(conf).float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert out.device.type == "cpu"
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    out32 = frame_similarity(torch.from_numpy(seq).float().requires_grad_(True))
    assert isinstance(out32, torch.Tensor) and out32.shape == (5, 5)


def test_matrix_bad_input():
    with pytest.raises(InputError):
        frame_similarity(np.zeros((4, 5)))
    with pytest.raises(InputError):
        frame_similarity(np.zeros((4, 5, 3)))
    with pytest.raises(InputError):
        frame_similarity(np.zeros((4, 5, 2)), np.ones((4, 6)))
    bad = np.zeros((4, 5, 2))
    bad[1, 1, 0] = np.inf
    with pytest.raises(InputError):
        frame_similarity(bad)


def test_pose_frame_similarity():
    pose = upright_pose(6)
    kp = pose.keypoints
    centre = kp[0, s.NOSE, :2].astype(np.float64)
    for t in range(1, 6):  # frames 1..5: the same pose rotated and moved
        kp[t, :, :2] = (_rotate(kp[0, :, :2] - centre, 0.05 * t) + centre + [4 * t, 0]).astype(
            np.float32
        )
    sim = pose_frame_similarity(pose)
    assert sim.shape == (6, 6)
    assert sim.max() < 1e-2  # float32 keypoints

    # Low-confidence points count as missing: moving one changes nothing ...
    kp[2, s.LEFT_WRIST] = [5.0, 5.0, 0.2]
    assert pose_frame_similarity(pose).max() < 1e-2
    # ... a confident one does, and only points in `keypoints` are compared.
    kp[2, s.LEFT_WRIST, 2] = 0.9
    moved = pose_frame_similarity(pose)
    assert moved[2, 0] > 10 and moved[0, 1] < 1e-2
    assert pose_frame_similarity(pose, keypoints=s.FACE).max() < 1e-2


def test_pose_frame_similarity_bad_keypoints():
    with pytest.raises(InputError):
        pose_frame_similarity(upright_pose(2), keypoints=(0, 133))
    with pytest.raises(InputError):
        pose_frame_similarity(upright_pose(2), keypoints=())


def test_a_frame_with_undetected_hands_never_outranks_a_closer_complete_frame():
    """Per shared point, not summed: frame 1 (complete, 2 px noise per point) must rank
    before frame 2 (hands not detected, 2.3 px per point), though frame 2's summed error
    over its fewer shared points is smaller."""
    pose = upright_pose(3)
    kp = pose.keypoints
    idx = np.asarray(s.UPPER_BODY)
    rng = np.random.default_rng(13)
    base = kp[0, idx, :2].astype(np.float64)
    for t, sigma in ((1, 2.0), (2, 2.3)):
        noise = rng.normal(0, 1, base.shape)
        noise -= noise.mean(0)  # no net translation
        kp[t, idx, :2] = (base + sigma * noise / np.sqrt((noise**2).sum(1).mean())).astype(
            np.float32
        )  # RMS exactly sigma before alignment
    hands = list(s.LEFT_HAND + s.RIGHT_HAND)
    kp[2, hands, 2] = 0.0
    sim = pose_frame_similarity(pose)
    conf = np.where(kp[:, idx, 2] >= 0.3, 1.0, 0.0)
    summed = [
        rigid_alignment_error(kp[0, idx, :2], kp[t, idx, :2], conf[0], conf[t]) for t in (1, 2)
    ]
    assert summed[1] < summed[0]  # the plain Eq. 1 sum would prefer the handless frame
    assert sim[0, 1] < sim[0, 2]
