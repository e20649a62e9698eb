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

import functools
import math

import cv2
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
    # Centred on the controls (the map commutes with moving v and p, or q, together), so the
    # expanded sums below subtract numbers of the size of the region, not of the image.
    p_mean, q_mean = p.mean(axis=0), q.mean(axis=0)
    targets = q
    p, q, v = p - p_mean, q - q_mean, points - p_mean
    dx = v[:, :1] - p[:, 0]  # [N, K]
    dy = v[:, 1:] - p[:, 1]
    d2 = dx * dx + dy * dy
    on = d2 < ON_CONTROL
    w = np.maximum(d2, ON_CONTROL, out=d2)
    w = np.reciprocal(w, out=w) if alpha == 1 else np.power(w, -alpha, out=w)
    # Every weighted sum at once: sum_i w_i (1, p_i, q_i, p_i . q_i, p_i x q_i).
    dot = p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]
    cross = p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]
    sums = w @ np.column_stack([np.ones(len(p)), p, q, dot, cross])  # [N, 7]
    total = sums[:, 0]
    p_star = sums[:, 1:3] / total[:, None]  # [N, 2]
    q_star = sums[:, 3:5] / total[:, None]
    # a = sum w_i hat p_i . hat q_i and c = sum w_i hat p_i x hat q_i with hat p_i = p_i - p*,
    # hat q_i = q_i - q*: both bilinear, so a = sum w_i p_i . q_i - W p* . q*, c likewise.
    a = sums[:, 5] - total * (p_star[:, 0] * q_star[:, 0] + p_star[:, 1] * q_star[:, 1])
    c = sums[:, 6] - total * (p_star[:, 0] * q_star[:, 1] - p_star[:, 1] * q_star[:, 0])
    norm = np.hypot(a, c)
    # No rotation is defined when the controls (or their targets) coincide: |(A, C)| is then
    # rounding noise, far below sum(w) * COINCIDENT^2; keep the translation of the centroids.
    turns = norm > total * COINCIDENT**2
    safe = np.where(turns, norm, 1.0)
    cos = np.where(turns, a / safe, 1.0)
    sin = np.where(turns, c / safe, 0.0)
    ex, ey = v[:, 0] - p_star[:, 0], v[:, 1] - p_star[:, 1]
    out = np.stack([cos * ex - sin * ey + q_star[:, 0], sin * ex + cos * ey + q_star[:, 1]], 1)
    out += q_mean
    if on.any():  # a point on a control point goes to its target
        rows, cols = np.nonzero(on)
        out[rows] = targets[cols]
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


@functools.lru_cache(maxsize=16)
def grid_points(height: int, width: int, grid: int) -> np.ndarray:
    """The nodes where a dense field is evaluated: every ``grid``-th pixel centre from the
    first, ``x_k = 0.5 + k * grid`` for ``k = 0 .. ceil((W - 1) / grid)`` (the last node at or
    past the last pixel centre), ``y`` likewise; continuous pixel coordinates (pixel
    ``(i, j)`` covers ``[j, j+1) x [i, i+1)``). ``[h, w, 2]`` (x, y); ``grid=1``: every pixel.
    Cached, so read-only: a warp asks for the same grid every frame."""
    if int(grid) < 1:
        raise InputError(f"MLS grid must be >= 1 pixel, got {grid}")
    rows, cols = (-(-(int(n) - 1) // grid) + 1 for n in (height, width))
    gx, gy = np.meshgrid(0.5 + grid * np.arange(cols), 0.5 + grid * np.arange(rows))
    nodes = np.stack([gx, gy], axis=-1)
    nodes.flags.writeable = False
    return nodes


def upsample_field(coarse: np.ndarray, grid: int, height: int, width: int) -> np.ndarray:
    """Bilinear interpolation of values ``[h, w, C]`` at the nodes of :func:`grid_points` to
    every pixel centre: float32 ``[H, W, C]`` (every pixel lies between nodes: no
    extrapolation). Pixel ``j`` is at node coordinate ``j / grid``: an affine map of the node
    array (OpenCV's bilinear ``warpAffine``; older OpenCV rounds the weights to 1/32, exact
    for a grid of 1, 2, 4, 8, 16 or 32 and within 1/64 of a node step otherwise)."""
    coarse = np.asarray(coarse, dtype=np.float32)
    if grid == 1:
        return coarse[:height, :width].copy()
    inverse = np.array([[1.0 / grid, 0.0, 0.0], [0.0, 1.0 / grid, 0.0]])
    flags, border = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, cv2.BORDER_REPLICATE
    channels = [  # OpenCV warps at most 4 channels at once
        cv2.warpAffine(
            np.ascontiguousarray(part), inverse, (width, height), flags=flags, borderMode=border
        ).reshape(height, width, -1)
        for part in np.split(coarse, range(4, coarse.shape[2], 4), axis=2)
    ]
    return np.concatenate(channels, axis=-1)


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


@functools.lru_cache(maxsize=16)
def pixel_centres(height: int, width: int) -> np.ndarray:
    """``[H, W, 2]`` float32 (x, y) of every pixel centre: ``(j + 0.5, i + 0.5)`` (cached,
    read-only)."""
    centres = grid_points(height, width, 1).astype(np.float32)
    centres.flags.writeable = False
    return centres
