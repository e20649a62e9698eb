"""Rigid moving-least-squares deformation (Schaefer, McPhail, Warren 2006, rigid variant).

For a point ``v`` and control pairs ``p_i -> q_i`` with weights
``w_i = 1 / |p_i - v|^(2 alpha)``, the weighted centroids ``p* = sum w_i p_i / sum w_i``,
``q*`` likewise, and ``hat p_i = p_i - p*``, ``hat q_i = q_i - q*``, the paper's rigid
deformation is

    f(v) = |v - p*| fvec(v) / |fvec(v)| + q*,   fvec(v) = sum_i hat q_i A_i,
    A_i = w_i [hat p_i ; -hat p_i^perp] [v - p* ; -(v - p*)^perp]^T,   (x, y)^perp = (-y, x).

Multiplied out in 2D, ``hat q_i A_i`` is ``(v - p*)`` rotated by the angle of
``(a_i, c_i) = (hat p_i . hat q_i, hat p_i x hat q_i)`` and scaled by ``w_i |(a_i, c_i)|``,
so ``fvec(v) = R(theta) (v - p*) |(A, C)|`` with ``A = sum w_i a_i``, ``C = sum w_i c_i``
and ``theta = atan2(C, A)``, and the deformation is the weighted best rotation:

    f(v) = R(theta(v)) (v - p*(v)) + q*(v).

That is what :func:`rigid_mls` evaluates, vectorised over points (tests check it against
the matrix form above, evaluated point by point). Degenerate cases: ``v`` on a control
point maps to its target (the limit of the weights); one control is a translation; no
control is the identity; controls that all coincide (``A = C = 0``) give the translation
of the centroids.

Dense fields: :func:`mls_field` evaluates the deformation at every ``grid``-th pixel
(:func:`grid_points`, spanning the whole image) and interpolates the *displacement*
bilinearly, which is what the image warp (:mod:`cospeech.pose.warp`) does per region. The
error of that approximation is at most ``grid^2 / 8 * (max |D_xx| + max |D_yy|)`` for the
displacement ``D`` (docs/pose.md).
"""

from __future__ import annotations

import math

import numpy as np

from cospeech.errors import InputError

ON_CONTROL = 1e-9
"""Squared distance (pixels^2) below which a point counts as lying on a control point."""
COINCIDENT = 1e-6
"""Pixels: controls (or targets) spread less than this around their centroid define no
rotation; the deformation is then the translation of the centroids."""


def rigid_mls(
    points: np.ndarray, source: np.ndarray, target: np.ndarray, alpha: float = 1.0
) -> np.ndarray:
    """Deform ``points [N, 2]`` by the rigid MLS of controls ``source [K, 2] -> target [K, 2]``:
    float64 ``[N, 2]``. ``alpha`` > 0 is the falloff of the weights ``1 / d^(2 alpha)``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p, q = _controls(source, target, alpha)
    if len(p) == 0:
        return points.copy()
    if len(p) == 1:
        return points + (q[0] - p[0])
    d2 = ((points[:, None, :] - p[None]) ** 2).sum(axis=2)  # [N, K]
    on = d2 < ON_CONTROL
    w = 1.0 / np.maximum(d2, ON_CONTROL) ** alpha
    p_star = (w @ p) / w.sum(axis=1, keepdims=True)  # [N, 2]
    q_star = (w @ q) / w.sum(axis=1, keepdims=True)
    # a_i = hat p_i . hat q_i and c_i = hat p_i x hat q_i, summed with the weights, expanded
    # so that no [N, K, 2] array is needed: hat p_i = p_i - p*, hat q_i = q_i - q*.
    px, py, qx, qy = p[:, 0], p[:, 1], q[:, 0], q[:, 1]
    sx, sy, tx, ty = p_star[:, :1], p_star[:, 1:], q_star[:, :1], q_star[:, 1:]
    hpx, hpy, hqx, hqy = px - sx, py - sy, qx - tx, qy - ty  # [N, K]
    a = (w * (hpx * hqx + hpy * hqy)).sum(axis=1)
    c = (w * (hpx * hqy - hpy * hqx)).sum(axis=1)
    norm = np.hypot(a, c)
    # No rotation is defined when the controls (or their targets) coincide: |(A, C)| is then
    # rounding noise, far below sum(w) * COINCIDENT^2; keep the translation of the centroids.
    turns = norm > w.sum(axis=1) * COINCIDENT**2
    safe = np.where(turns, norm, 1.0)
    cos = np.where(turns, a / safe, 1.0)
    sin = np.where(turns, c / safe, 0.0)
    dx, dy = points[:, 0] - p_star[:, 0], points[:, 1] - p_star[:, 1]
    out = np.stack([cos * dx - sin * dy + q_star[:, 0], sin * dx + cos * dy + q_star[:, 1]], 1)
    if on.any():  # a point on a control point goes to its target
        rows, cols = np.nonzero(on)
        out[rows] = q[cols]
    return out


def _controls(source: np.ndarray, target: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    p = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if p.shape != q.shape:
        raise InputError(f"rigid_mls: {len(p)} source but {len(q)} target control points")
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise InputError("rigid_mls: control points must be finite")
    if not (math.isfinite(alpha) and alpha > 0):
        raise InputError(f"rigid_mls: alpha must be > 0, got {alpha}")
    return p, q


def grid_points(height: int, width: int, grid: int) -> np.ndarray:
    """The nodes where a dense field is evaluated: every ``grid``-th pixel centre from the
    first, ``x_k = 0.5 + k * grid`` for ``k = 0 .. ceil((W - 1) / grid)`` (the last node at or
    past the last pixel centre), ``y`` likewise; continuous pixel coordinates (pixel
    ``(i, j)`` covers ``[j, j+1) x [i, i+1)``). ``[h, w, 2]`` (x, y); ``grid=1``: every pixel."""
    if int(grid) < 1:
        raise InputError(f"MLS grid must be >= 1 pixel, got {grid}")
    rows, cols = (-(-(int(n) - 1) // grid) + 1 for n in (height, width))
    gx, gy = np.meshgrid(0.5 + grid * np.arange(cols), 0.5 + grid * np.arange(rows))
    return np.stack([gx, gy], axis=-1)


def upsample_field(coarse: np.ndarray, grid: int, height: int, width: int) -> np.ndarray:
    """Bilinear interpolation of values ``[h, w, C]`` at the nodes of :func:`grid_points` to
    every pixel centre: float32 ``[H, W, C]`` (every pixel lies between nodes: no
    extrapolation)."""
    coarse = np.asarray(coarse, dtype=np.float32)
    if grid == 1:
        return coarse[:height, :width].copy()
    rows = _interpolation(height, coarse.shape[0], grid)  # [H, h]
    cols = _interpolation(width, coarse.shape[1], grid)  # [W, w]
    along_y = np.tensordot(rows, coarse, axes=(1, 0))  # [H, w, C]
    return np.ascontiguousarray(np.tensordot(along_y, cols, axes=(1, 1)).transpose(0, 2, 1))


def _interpolation(size: int, nodes: int, grid: int) -> np.ndarray:
    """``[size, nodes]`` float32: linear interpolation weights of pixel ``j`` (at node
    coordinate ``j / grid``) between its two neighbouring nodes."""
    t = np.arange(size) / grid
    left = np.minimum(np.floor(t).astype(np.int64), nodes - 1)
    right = np.minimum(left + 1, nodes - 1)
    frac = (t - left).astype(np.float32)
    out = np.zeros((size, nodes), dtype=np.float32)
    out[np.arange(size), left] += 1.0 - frac
    out[np.arange(size), right] += frac
    return out


def mls_field(
    source: np.ndarray,
    target: np.ndarray,
    height: int,
    width: int,
    grid: int = 4,
    alpha: float = 1.0,
) -> np.ndarray:
    """The rigid MLS of ``source -> target`` at every pixel centre of a ``width x height``
    image: float32 ``[H, W, 2]`` (where each pixel's centre goes), evaluated on a
    ``grid``-pixel grid with the displacement upsampled bilinearly (``grid=1``: exact)."""
    centres = grid_points(height, width, grid)
    moved = rigid_mls(centres.reshape(-1, 2), source, target, alpha).reshape(centres.shape)
    displacement = upsample_field(moved - centres, grid, height, width)
    return pixel_centres(height, width) + displacement


def pixel_centres(height: int, width: int) -> np.ndarray:
    """``[H, W, 2]`` float32 (x, y) of every pixel centre: ``(j + 0.5, i + 0.5)``."""
    return grid_points(height, width, 1).astype(np.float32)
