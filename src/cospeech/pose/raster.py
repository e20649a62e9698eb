"""Body regions rasterised on the latent token grid (the local attention mask, region loss).

The rule, exactly (docs/pose.md explains it in full):

* **Token grid.** A ``W x H`` video becomes ``w = W / (space_stride * patch_w)`` by
  ``h = H / (space_stride * patch_h)`` tokens; token ``(r, c)`` covers the pixels
  ``x in [c * cell_w, (c + 1) * cell_w)``, ``y in [r * cell_h, (r + 1) * cell_h)`` with
  ``cell = space_stride * patch``, and its *centre* is ``((c + 0.5) * cell_w,
  (r + 0.5) * cell_h)``. Keypoints are continuous pixel coordinates on the same axes.
  Distances below are measured in token units (``x / cell_w``, ``y / cell_h``).
* **Parts.** A region is the union of its parts (a region set, e.g.
  :data:`~cospeech.pose.regions.ATTENTION_REGIONS`, maps names to parts). A part covers a
  token when the token's centre lies within ``margin`` of the convex hull of the part's
  confident keypoints (confidence >= ``min_confidence`` and > 0): inside the hull, or at
  distance <= ``margin`` from it. So a part with one confident point is a disc of radius
  ``margin`` around it, with two a capsule; none covers nothing.
* **Margin.** Default :data:`DEFAULT_MARGIN` = 1 token: every token that contains a
  keypoint (or any point of the hull) is covered, since a cell's centre is at most
  ``sqrt(2)/2`` tokens from any point in it; the other ~0.3 token is slack for the
  flesh around the skeleton.
* **Time.** The VAE is causal: latent frame 0 is video frame 0, latent ``i >= 1`` is
  video frames ``4i-3 .. 4i`` (``time_stride = 4``), so ``T_latent = 1 + ceil((T-1)/4)``
  (:func:`cospeech.latent_geometry.latent_frame_ranges`);
  a final partial group takes the frames there are. A latent frame's region is the union
  of the region over its video frames (and over ``patch_t`` latent frames per token).
* **Overlaps** are kept: a token's value is the bitmask of every region covering it
  (bit ``i`` = region ``i`` of the region set, :func:`~cospeech.pose.regions.region_bits`),
  0 = background.

Cost: one convex hull per frame for parts with 4 or more keypoints (OpenCV), the rest is
vectorised over frames and restricted to each part's bounding box on the grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from cospeech.errors import InputError
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE, latent_frame_ranges
from cospeech.pose.regions import ATTENTION_REGIONS, RegionSet
from cospeech.pose.sequence import PoseSequence

DEFAULT_MARGIN = 1.0
"""Dilation of every part, in token units (1 token = ``space_stride * patch`` pixels)."""

_EPS = 1e-9
_CHUNK_ELEMENTS = 1 << 22  # [frames, hull vertices, tokens] elements per temporary array


def region_token_masks(
    pose: PoseSequence,
    time_stride: int = TIME_STRIDE,
    space_stride: int = SPACE_STRIDE,
    patch: tuple[int, int, int] = (1, 2, 2),
    margin: float | Mapping[str, float] = DEFAULT_MARGIN,
    *,
    regions: RegionSet = ATTENTION_REGIONS,
    min_confidence: float = 0.3,
) -> np.ndarray:
    """The regions of every latent token as a bitmask: int64 ``[T_tokens, h, w]``.

    Bit ``i`` is set where region ``i`` of ``regions`` (default: the paper's R, hands
    merged; :data:`~cospeech.pose.regions.BODY_REGIONS` names each hand) covers the
    token; 0 = background. Overlapping regions set several bits.
    ``T_tokens = (1 + ceil((T - 1) / time_stride)) / patch_t``, ``h = H / (space_stride *
    patch_h)``, ``w = W / (space_stride * patch_w)`` (an :class:`InputError` when these do
    not divide). ``margin`` is in token units, one number for all regions or a mapping
    from region name to margin (regions left out use :data:`DEFAULT_MARGIN`). Masks per
    video frame: ``time_stride=1, patch=(1, 1, 1)`` (margin in ``space_stride`` pixels).
    """
    grid = _TokenGrid.of(pose, time_stride, space_stride, patch, "region_token_masks")
    if not regions or len(regions) > 62:
        raise InputError(f"region_token_masks: need 1 to 62 regions, got {len(regions)}")
    margins = _margins(margin, tuple(regions))
    masks = np.zeros(grid.shape, dtype=np.int64)
    for bit, (name, parts) in enumerate(regions.items()):
        tokens = grid.mask(pose, parts, margins[name], min_confidence)
        masks[tokens] |= np.int64(1) << bit
    return masks


def keypoint_token_mask(
    pose: PoseSequence,
    keypoints: tuple[int, ...],
    time_stride: int = TIME_STRIDE,
    space_stride: int = SPACE_STRIDE,
    patch: tuple[int, int, int] = (1, 2, 2),
    margin: float = DEFAULT_MARGIN,
    *,
    min_confidence: float = 0.3,
) -> np.ndarray:
    """Tokens covered by the hull of ``keypoints`` (one part, the rule of
    :func:`region_token_masks` for a single part): bool ``[T_tokens, h, w]``.
    For a detail smaller than a region, e.g. the lips (:data:`~cospeech.pose.schema.MOUTH`)."""
    grid = _TokenGrid.of(pose, time_stride, space_stride, patch, "keypoint_token_mask")
    if not (math.isfinite(margin) and margin >= 0):
        raise InputError(f"keypoint_token_mask: margin must be >= 0, got {margin}")
    return grid.mask(pose, (tuple(keypoints),), float(margin), min_confidence)


@dataclass(frozen=True)
class _TokenGrid:
    """The token grid of a pose sequence: cell size in pixels, grid size, latent frames."""

    cell: tuple[int, int]  # (height, width) of a token in pixels
    shape: tuple[int, int, int]  # (T_tokens, h, w)
    starts: np.ndarray  # first video frame of every latent frame
    patch_t: int

    @classmethod
    def of(
        cls,
        pose: PoseSequence,
        time_stride: int,
        space_stride: int,
        patch: tuple[int, int, int],
        where: str,
    ) -> _TokenGrid:
        if not isinstance(pose, PoseSequence):
            raise InputError(f"{where}: expected a PoseSequence, got {type(pose).__name__}")
        pose.validate()
        if len(patch) != 3 or min(int(p) for p in patch) < 1:
            raise InputError(f"{where}: patch must be 3 positive ints, got {patch}")
        pt, ph, pw = (int(p) for p in patch)
        if int(space_stride) < 1 or int(time_stride) < 1:
            raise InputError(f"{where}: strides must be positive")
        cell_h, cell_w = int(space_stride) * ph, int(space_stride) * pw
        if pose.height % cell_h or pose.width % cell_w:
            raise InputError(
                f"{where}: a {pose.width}x{pose.height} frame does not divide into "
                f"{cell_w}x{cell_h}-pixel tokens (space_stride {space_stride} x patch {ph}x{pw})"
            )
        ranges = latent_frame_ranges(len(pose), int(time_stride))
        if len(ranges) % pt:
            raise InputError(
                f"{where}: {len(ranges)} latent frames do not divide into temporal patches of {pt}"
            )
        shape = (len(ranges) // pt, pose.height // cell_h, pose.width // cell_w)
        return cls((cell_h, cell_w), shape, np.array([s for s, _ in ranges]), pt)

    def mask(
        self,
        pose: PoseSequence,
        parts: tuple[tuple[int, ...], ...],
        margin: float,
        min_confidence: float,
    ) -> np.ndarray:
        """Bool ``[T_tokens, h, w]``: tokens within ``margin`` of any part's hull."""
        # Token coordinates: x / cell_w, y / cell_h; token centres at integer + 0.5.
        points = pose.points.astype(np.float64) / np.array([self.cell[1], self.cell[0]])
        ok = (pose.confidence >= min_confidence) & (pose.confidence > 0)
        frames = np.zeros((len(pose), *self.shape[1:]), dtype=bool)
        for part in parts:
            _rasterise_part(points[:, part], ok[:, part], margin, frames)
        latent = np.logical_or.reduceat(frames, self.starts, axis=0)
        return latent.reshape(-1, self.patch_t, *self.shape[1:]).any(axis=1)


def _margins(margin: float | Mapping[str, float], names: tuple[str, ...]) -> dict[str, float]:
    if isinstance(margin, Mapping):
        unknown = set(margin) - set(names)
        if unknown:
            raise InputError(f"region_token_masks: unknown region(s) in margin: {sorted(unknown)}")
        out = {name: float(margin.get(name, DEFAULT_MARGIN)) for name in names}
    else:
        out = dict.fromkeys(names, float(margin))
    for name, m in out.items():
        if not (math.isfinite(m) and m >= 0):
            raise InputError(f"region_token_masks: margin of {name} must be >= 0, got {m}")
    return out


def _hull_vertices(points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per frame, the vertices of the convex hull of the confident points, in order, padded
    by repeating the last vertex: ``[T, V, 2]``. Frames without a confident point get a
    vertex anywhere (they are masked out by the caller). ``points [T, K, 2]``, ``ok [T, K]``."""
    num_frames, k = ok.shape
    if k <= 3:  # every ordering of <= 3 points is convex: replace missing by a present one
        first = np.argmax(ok, axis=1)
        fill = points[np.arange(num_frames), first][:, None, :]
        return np.where(ok[..., None], points, fill)
    hulls = []
    for t in range(num_frames):
        present = points[t, ok[t]]
        if len(present) == 0:
            hulls.append(points[t, :1])
        elif len(present) <= 2:
            hulls.append(present)
        else:
            idx = cv2.convexHull(present.astype(np.float32), returnPoints=False)[:, 0]
            hulls.append(present[np.sort(idx)] if len(idx) <= 2 else present[idx])
    size = max(len(v) for v in hulls)
    out = np.empty((num_frames, size, 2))
    for t, v in enumerate(hulls):
        out[t, : len(v)] = v
        out[t, len(v) :] = v[-1]
    return out


def _rasterise_part(points: np.ndarray, ok: np.ndarray, margin: float, out: np.ndarray) -> None:
    """OR into ``out [T, h, w]`` the tokens whose centre is within ``margin`` of the hull of
    each frame's confident points. ``points [T, K, 2]`` in token units, ``ok [T, K]``."""
    frames = np.flatnonzero(ok.any(axis=1))
    if frames.size == 0:
        return
    verts = _hull_vertices(points[frames], ok[frames])  # [F, V, 2]
    # Frames in chunks, so that pixel-resolution grids stay within a bounded memory.
    step = max(1, _CHUNK_ELEMENTS // (verts.shape[1] * out.shape[1] * out.shape[2]))
    for i in range(0, len(frames), step):
        _rasterise_hulls(verts[i : i + step], margin, frames[i : i + step], out)


def _rasterise_hulls(verts: np.ndarray, margin: float, frames: np.ndarray, out: np.ndarray) -> None:
    """The core of :func:`_rasterise_part` for hull vertices ``[F, V, 2]`` of ``frames``."""
    h, w = out.shape[1:]
    # Only the tokens whose centre can be within the margin of some frame's hull.
    lo = verts.reshape(-1, 2).min(axis=0) - margin
    hi = verts.reshape(-1, 2).max(axis=0) + margin
    c0, r0 = (max(0, math.ceil(v - 0.5 - _EPS)) for v in lo)
    c1 = min(w, math.floor(hi[0] - 0.5 + _EPS) + 1)
    r1 = min(h, math.floor(hi[1] - 0.5 + _EPS) + 1)
    if r0 >= r1 or c0 >= c1:
        return
    gy, gx = np.mgrid[r0:r1, c0:c1]
    px = (gx.ravel() + 0.5)[None, None, :]  # [1, 1, N]
    py = (gy.ravel() + 0.5)[None, None, :]

    ax, ay = verts[..., 0:1], verts[..., 1:2]  # [F, V, 1]
    nxt = np.roll(verts, -1, axis=1)
    dx, dy = nxt[..., 0:1] - ax, nxt[..., 1:2] - ay
    rx, ry = px - ax, py - ay  # [F, V, N]

    # Distance to the hull's boundary: the nearest of its edges (zero-length ones are points).
    length2 = dx * dx + dy * dy
    s = np.clip((rx * dx + ry * dy) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    ex, ey = rx - s * dx, ry - s * dy
    near = (ex * ex + ey * ey).min(axis=1) <= margin * margin + _EPS  # [F, N]

    # Inside a hull of positive area: the same side of every edge (either orientation).
    cross = dx * ry - dy * rx
    x, y = verts[..., 0], verts[..., 1]
    area2 = np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))
    inside = ((cross >= 0).all(axis=1) | (cross <= 0).all(axis=1)) & (area2 > _EPS)[:, None]

    covered = (near | inside).reshape(len(frames), r1 - r0, c1 - c0)
    out[frames, r0:r1, c0:c1] |= covered
