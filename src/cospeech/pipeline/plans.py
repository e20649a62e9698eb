"""Sparse attention in generation (paper Sec. 3.2): the plans of the driving pose.

``--attention`` picks what the DiT's self-attention computes:

- ``dense``: everything (no plan);
- ``global``: the global mask only (Eq. 2: each latent frame attends itself, the sink frame
  and its K most similar frames), every token of a kept frame pair;
- ``sparse``: the global mask and the local region mask (Eq. 3): across frames, only
  tokens that share a body region.

The teacher's windows get bidirectional plans (``causal=False``) from the window's keypoints
(:class:`WindowPlans`). The causal student's chunks get causal plans over just the latent
frames its KV cache holds followed by the chunk's own (:class:`ChunkPlans`): the K most
similar frames are chosen among those it can attend, so a plan's size and cost stay bounded
however long the speech (a plan over the whole video would grow with its square). Without
eviction this is exactly the whole-clip causal plan the student was trained with (tested).

Both record the realised density (:class:`Density`): the fraction of the query-key token
pairs of dense attention that the plans keep, 1 = dense.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cospeech.attention import SparsePlan
from cospeech.attention.masks import global_frame_mask
from cospeech.attention.pose_plan import pose_plan
from cospeech.errors import InputError
from cospeech.latent_geometry import TIME_STRIDE
from cospeech.models.i2v import window_frame_indices
from cospeech.pose.raster import region_token_masks
from cospeech.pose.sequence import PoseSequence
from cospeech.pose.similarity import pose_frame_similarity

ATTENTIONS = ("dense", "global", "sparse")
POSE_FPS = 25.0  # PoseSequence needs a rate; nothing here depends on it


def check_attention(attention: str) -> str:
    """``attention`` if it is one of :data:`ATTENTIONS`, else InputError naming the flag."""
    if attention not in ATTENTIONS:
        raise InputError(f"--attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
    return attention


@dataclass(frozen=True)
class PlanOptions:
    """How plans are built: ``attention`` (``global`` or ``sparse``), ``k`` (K of Eq. 2),
    ``block_size`` (tokens per block), the DiT's ``patch`` and the VAE's ``space_stride``."""

    attention: str
    k: int
    block_size: int
    patch: tuple[int, int, int]
    space_stride: int

    @property
    def local(self) -> bool:
        """Whether the region mask applies (``sparse``)."""
        return self.attention == "sparse"


class Density:
    """Mean token density of the plans used (kept query-key pairs / all), 1 = dense."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, density: float) -> None:
        self.total += density
        self.count += 1

    @property
    def mean(self) -> float | None:
        """None when no plan was used (dense attention)."""
        return self.total / self.count if self.count else None


class WindowPlans:
    """The teacher's per-window bidirectional plans, ``plans(start, length)``, built from the
    keypoints ``[N, 133, 3]`` (pixels of the ``size`` frame) of the video frames the window's
    pose maps show (:func:`~cospeech.models.i2v.window_frame_indices`). Kept by start: the
    fused sampler asks for every window at every step; ``keep`` bounds how many are held (1
    for the window chain, which finishes one window before the next)."""

    def __init__(
        self, keypoints: np.ndarray, size: int, options: PlanOptions, keep: int | None = None
    ) -> None:
        self.keypoints, self.size, self.options, self.keep = keypoints, size, options, keep
        self.plans: dict[tuple[int, int], SparsePlan] = {}
        self.density = Density()

    def __call__(self, start: int, length: int) -> SparsePlan:
        key = (start, length)
        if key not in self.plans:
            if self.keep is not None and len(self.plans) >= self.keep:
                del self.plans[next(iter(self.plans))]
            self.plans[key] = self._build(start, length)
        return self.plans[key]

    def _build(self, start: int, length: int) -> SparsePlan:
        opts = self.options
        frames = window_frame_indices(start, length, len(self.keypoints))
        pose = PoseSequence(self.keypoints[frames], POSE_FPS, self.size, self.size)
        plan = pose_plan(
            pose, k=opts.k, block_size=opts.block_size, exact=True, time_stride=TIME_STRIDE,
            space_stride=opts.space_stride, patch=opts.patch, causal=False, local=opts.local,
        )  # fmt: skip
        self.density.add(plan.token_density)
        return plan


class ChunkPlans:
    """The causal student's per-chunk plans (see the module docstring).

    ``plans(held, chunk)``: the plan over latent frames ``held`` (absolute indices, in the KV
    cache's storage order) followed by ``chunk``, as ``VideoDiT``'s cached path takes it: its
    Eq. 2 mask ranks, for each chunk frame, the earlier frames of that list by pose distance
    (mean rigid distance over the video frames two latent frames cover) and keeps the K
    nearest, plus latent frame 0 as the sink when it is held; its regions are the union of
    the covered video frames' regions. Region masks are computed once per latent frame and
    dropped when the frame leaves the cache. ``device``: where the DiT runs (the groups the
    mask the density is counted on is cached there, for the DiT's own call).
    """

    def __init__(
        self, keypoints: np.ndarray, size: int, options: PlanOptions, device: torch.device
    ) -> None:
        self.keypoints, self.size, self.options, self.device = keypoints, size, options, device
        self.regions: dict[int, np.ndarray] = {}  # latent frame -> [h, w] int64 bitmask
        self.density = Density()

    def __call__(self, held: Sequence[int], chunk: Sequence[int]) -> SparsePlan:
        frames = [*held, *chunk]
        ranges = [self._video_range(frame) for frame in frames]
        video = np.concatenate([np.arange(a, b) for a, b in ranges])
        sink = 1 if frames[0] == 0 else 0
        similarity = self._similarity(video, ranges)
        mask = global_frame_mask(similarity, k=self.options.k, sink_frames=sink)
        plan = SparsePlan.build(
            mask, self._frame_regions(frames, ranges), self.options.block_size, exact=True
        )
        keys = list(range(len(frames)))
        mask = plan.chunk_mask(keys[len(held) :], keys, self.device)
        self.density.add(float(mask.float().mean()))
        return plan

    def _video_range(self, frame: int) -> tuple[int, int]:
        """Video frames ``[a, b)`` latent ``frame`` covers (the VAE's grouping)."""
        if frame == 0:
            return 0, 1
        return TIME_STRIDE * (frame - 1) + 1, min(TIME_STRIDE * frame + 1, len(self.keypoints))

    def _pose(self, video: np.ndarray) -> PoseSequence:
        return PoseSequence(self.keypoints[video], POSE_FPS, self.size, self.size)

    def _similarity(self, video: np.ndarray, ranges: list[tuple[int, int]]) -> torch.Tensor:
        """Latent-frame distances ``[n, n]``: the mean of the finite video-frame distances
        between the frames two latent frames cover, +inf where there is none (as
        :func:`~cospeech.attention.masks.latent_frame_similarity` does for a whole clip)."""
        distances = pose_frame_similarity(self._pose(video))
        group = np.zeros((len(ranges), len(video)))
        column = 0
        for row, (a, b) in enumerate(ranges):
            group[row, column : column + b - a] = 1.0
            column += b - a
        finite = np.isfinite(distances)
        total = group @ np.where(finite, distances, 0.0) @ group.T
        count = group @ finite.astype(np.float64) @ group.T
        return torch.from_numpy(np.where(count > 0, total / np.maximum(count, 1.0), np.inf))

    def _frame_regions(self, frames: list[int], ranges: list[tuple[int, int]]) -> np.ndarray:
        """Region bitmasks ``[n, h, w]`` of ``frames`` (all ones for ``global``)."""
        opts = self.options
        cell_h, cell_w = opts.space_stride * opts.patch[1], opts.space_stride * opts.patch[2]
        if self.size % cell_h or self.size % cell_w:
            raise InputError(f"a {self.size}x{self.size} frame does not divide into tokens")
        if not opts.local:
            return np.ones((len(frames), self.size // cell_h, self.size // cell_w), np.int64)
        new = [(f, r) for f, r in zip(frames, ranges, strict=True) if f not in self.regions]
        if new:
            video = np.concatenate([np.arange(a, b) for _, (a, b) in new])
            per_frame = region_token_masks(
                self._pose(video), time_stride=1, space_stride=opts.space_stride,
                patch=(1, *opts.patch[1:]),
            )  # fmt: skip
            starts = np.cumsum([0] + [b - a for _, (a, b) in new[:-1]])
            unions = np.bitwise_or.reduceat(per_frame, starts)
            for (frame, _), union in zip(new, unions, strict=True):
                self.regions[frame] = union
        for frame in set(self.regions) - set(frames):
            del self.regions[frame]
        return np.stack([self.regions[frame] for frame in frames])
