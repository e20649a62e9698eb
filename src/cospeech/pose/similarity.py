"""Rigid pose similarity: how far apart two poses are once rotation and translation are undone.

The paper's global mask (Eq. 1-2) compares frames by

    S(a, b) = min over R in SO(2), t in R^2 of || a - (R b + t) ||_F

for point sets ``a, b`` of shape ``[B, 2]``. In 2D the minimiser has a closed form (the
2D case of Kabsch): with the sets centred on their own centroids (``A = a - mean(a)``,
``B = b - mean(b)``) and the sums over points

    d = sum(A_x B_x + A_y B_y)        (dot)
    c = sum(A_y B_x - A_x B_y)        (cross, B x A)

the best rotation angle is ``atan2(c, d)`` and

    S^2 = sum|A|^2 + sum|B|^2 - 2 sqrt(d^2 + c^2).

No scaling is allowed (a pose twice as large is not similar), and there is no reflection
(det R = +1). Points that are missing (confidence 0) in either set are left out of the
pair. A pair of frames with no point in common has no defined error and gets ``+inf``.

:func:`rigid_alignment_error` is Eq. 1 as written (the Frobenius norm over the shared
points). :func:`frame_similarity`, which ranks frames for the global mask, divides it by
``sqrt(n)`` for ``n`` shared points: the **RMS error per shared point**. A sum over the
shared points grows with their number, so a frame whose hands were not detected (fewer
shared points) would look closer than a complete frame that is closer point by point;
per point, a missing keypoint neither helps nor hurts a frame.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

if TYPE_CHECKING:
    import torch

    from cospeech.pose.sequence import PoseSequence

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _as_float64(x: object, name: str) -> np.ndarray:
    """numpy or torch (any device) -> float64 numpy, with finiteness checked."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch for numpy callers
        x = x.detach().to("cpu").double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return arr


def _mask(conf: object | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Confidence -> float64 0/1 mask of ``shape`` (a point counts iff confidence > 0)."""
    if conf is None:
        return np.ones(shape, dtype=np.float64)
    c = _as_float64(conf, name)
    if c.shape != shape:
        raise InputError(f"{name}: expected shape {list(shape)}, got {list(c.shape)}")
    return (c > 0).astype(np.float64)


def rigid_alignment_error(
    a: np.ndarray,
    b: np.ndarray,
    conf_a: np.ndarray | None = None,
    conf_b: np.ndarray | None = None,
) -> float:
    """Smallest ``||a - (R b + t)||_F`` over rotations ``R`` (det +1) and translations ``t``.

    ``a``, ``b``: ``[B, 2]`` points (numpy or torch); ``conf_a``, ``conf_b``: optional ``[B]``
    confidences, a point is used only if its confidence is > 0 in both sets. Returns
    ``inf`` when no point is shared, ``0.0`` for a single shared point.
    """
    pa = _as_float64(a, "rigid_alignment_error: a")
    pb = _as_float64(b, "rigid_alignment_error: b")
    if pa.ndim != 2 or pa.shape[1] != 2 or pa.shape != pb.shape:
        raise InputError(
            f"rigid_alignment_error: expected two [B, 2] point sets, "
            f"got {list(pa.shape)} and {list(pb.shape)}"
        )
    keep = (_mask(conf_a, pa.shape[:1], "conf_a") * _mask(conf_b, pb.shape[:1], "conf_b")) > 0
    if not keep.any():
        return math.inf
    A = pa[keep] - pa[keep].mean(axis=0)
    B = pb[keep] - pb[keep].mean(axis=0)
    dot = float(np.sum(A * B))
    cross = float(np.sum(A[:, 1] * B[:, 0] - A[:, 0] * B[:, 1]))
    theta = math.atan2(cross, dot)
    cos, sin = math.cos(theta), math.sin(theta)
    rotated = np.stack([cos * B[:, 0] - sin * B[:, 1], sin * B[:, 0] + cos * B[:, 1]], axis=1)
    # The residual is evaluated directly (not via the S^2 identity) for full precision.
    return float(np.sqrt(np.sum((A - rotated) ** 2)))


def frame_similarity(points: ArrayT, confidence: ArrayT | None = None) -> ArrayT:
    """Pairwise rigid alignment errors per shared point (RMS) between the frames of a sequence.

    ``points``: ``[T, B, 2]``; ``confidence``: optional ``[T, B]`` (a point counts for a
    pair only if its confidence is > 0 in both frames). Returns ``[T, T]`` float64, the
    same kind as ``points`` (numpy, or torch on the same device): entry ``(i, j)`` equals
    ``rigid_alignment_error(points[i], points[j], confidence[i], confidence[j]) / sqrt(n)``
    with ``n`` the points shared by the two frames (see the module docstring for why);
    symmetric, zero diagonal, ``inf`` for pairs with no shared point.

    Every per-pair sum is a weighted sum over the ``B`` points with weights
    ``m_i * m_j``, i.e. a ``[T, B] @ [B, T]`` matrix product, so the cost is a handful of
    matmuls (T = 500, B = 133: tens of milliseconds). Precision: the residual comes from
    the ``S^2`` identity, so an exact match gives a few ``1e-8 * ||A||`` instead of 0.
    """
    p = _as_float64(points, "frame_similarity: points")
    if p.ndim != 3 or p.shape[2] != 2:
        raise InputError(f"frame_similarity: expected points [T, B, 2], got {list(p.shape)}")
    m = _mask(confidence, p.shape[:2], "frame_similarity: confidence")  # [T, B]

    # Translation-invariance lets each frame be shifted by any offset; centring each frame
    # on its own confident mean keeps the sums small and the cancellations below mild.
    count = m.sum(axis=1, keepdims=True)
    offset = (p * m[..., None]).sum(axis=1) / np.maximum(count, 1.0)
    p = (p - offset[:, None, :]) * m[..., None]  # masked points are exactly 0
    x, y = p[..., 0], p[..., 1]  # [T, B]
    sq = x * x + y * y

    n = m @ m.T  # shared points per pair
    sx, sy = x @ m.T, y @ m.T  # (i, j): sum of frame i's coordinates over the shared points
    ssq = sq @ m.T  # (i, j): sum of frame i's squared norms over the shared points
    dot = x @ x.T + y @ y.T  # sum a . b
    cross = y @ x.T - x @ y.T  # sum a_y b_x - a_x b_y  (row i = a, column j = b)

    with np.errstate(divide="ignore", invalid="ignore"):
        inv_n = np.where(n > 0, 1.0 / n, 0.0)
        var_a = ssq - (sx * sx + sy * sy) * inv_n  # sum |A|^2 for frame i
        dot_c = dot - (sx * sx.T + sy * sy.T) * inv_n
        cross_c = cross - (sy * sx.T - sx * sy.T) * inv_n
        err2 = var_a + var_a.T - 2.0 * np.sqrt(dot_c * dot_c + cross_c * cross_c)
        rms = np.sqrt(np.maximum(err2, 0.0) * inv_n)
    sim = 0.5 * (rms + rms.T)
    sim[n == 0] = np.inf
    np.fill_diagonal(sim, 0.0)

    if hasattr(points, "detach"):
        import torch

        return torch.from_numpy(sim).to(points.device)
    return sim


def pose_frame_similarity(
    pose: PoseSequence,
    keypoints: tuple[int, ...] = schema.UPPER_BODY,
    *,
    min_confidence: float = 0.3,
) -> np.ndarray:
    """:func:`frame_similarity` of a :class:`PoseSequence` on the given keypoints.

    Points with confidence below ``min_confidence`` (the drawing and rasterising
    threshold) are treated as missing. Returns ``[T, T]`` float64.
    """
    pose.validate()
    idx = np.asarray(keypoints, dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= schema.NUM_KEYPOINTS:
        raise InputError(
            f"pose_frame_similarity: keypoints must be indices in [0, {schema.NUM_KEYPOINTS})"
        )
    conf = pose.confidence[:, idx]
    conf = np.where(conf >= min_confidence, conf, 0.0)
    return frame_similarity(pose.points[:, idx], conf)
