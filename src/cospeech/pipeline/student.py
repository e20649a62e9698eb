"""The distilled causal few-step student, chunk after chunk (paper Sec. 3.3; CausVid /
Self-Forcing inference), exactly as the ``distill`` stage's rollout trains it.

Over the whole latent sequence (``T = 1 + ceil((N - 1) / 4)`` for ``N`` video frames),
chunk after chunk of ``chunk_frames`` latent frames (the last may be shorter):

1. start from noise drawn per latent frame, in order, from the seed
   (:class:`~.windows.SequentialNoise`: a frame's noise does not depend on the video's
   length);
2. run the first ``levels`` noise levels of the step list
   (:func:`~cospeech.diffusion.step_list_sigmas`): at each, the model's x0 prediction;
   before the next, re-noise it with fresh noise from a second seeded generator;
3. commit the clean chunk (the last x0 prediction) to the KV cache by one more forward at
   t = 0 with ``cache_update=True`` (not the video's last chunk: nothing reads it), and hand
   it out at once.

Every chunk is conditioned on the pose maps of the video frames it covers and the reference
pose; the reference latent sits in the first chunk's slot only
(:func:`~cospeech.models.i2v.chunk_conditions`). No guidance (the student was distilled
from the guided teacher). The cache keeps ``cache_sink`` chunks forever and a rolling
window of :func:`cache_window_chunks` chunks, so memory, RoPE positions and time per chunk
stay bounded however long the speech; with ``attention`` ``sparse`` / ``global`` each chunk
runs with the causal plan of its own and the cached frames (:class:`.plans.ChunkPlans`).

A warp-conditioned student (``warp_dim > 0``, distilled from a warp-conditioned teacher)
also takes the reference warped to every frame's pose (``warped`` ``[1, C + 1, T, h, w]``
of the whole video, :func:`cospeech.models.warp_condition.warp_condition`): each chunk gets
its own latent frames of it, for its denoising calls and its commit, so the cached keys of
an earlier chunk are those of its own warp frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cospeech.diffusion import add_noise, flow_to_x0, sigma_to_timestep, step_list_sigmas
from cospeech.models import KVCache, VideoDiT
from cospeech.models.i2v import (
    WARP_CONDITION,
    ConditionedFlow,
    StudentSampling,
    chunk_conditions,
    chunk_video_range,
    pose_maps,
)
from cospeech.models.warp_condition import check_warp_input
from cospeech.pipeline.plans import ChunkPlans
from cospeech.pipeline.windows import SequentialNoise

RENOISE_SALT = 0x5EED_0F_5EED  # seed offset of the re-noising generator (apart from the start's)


def cache_window_chunks(sampling: StudentSampling) -> int:
    """Chunks of the KV cache's rolling window at inference: ``cache_window``, or for 0
    ("all", as the student was trained: every earlier chunk of its training window) the
    chunks that fill one training window of ``window`` latent frames beside the sink and
    the current chunk (at least 1). The context then never exceeds what the student saw in
    training, and its compacted RoPE positions stay below ``window``-ish however long the
    video runs (keeping all would grow memory and time per chunk without bound and leave
    the RoPE table after ``rope_max_positions`` latent frames)."""
    if sampling.cache_window:
        return sampling.cache_window
    chunks_per_window = -(-sampling.window // sampling.chunk_frames)
    return max(1, chunks_per_window - sampling.cache_sink - 1)


class StudentNoise:
    """The student's noise: ``noise(level, start, stop) -> [1, C, stop - start, h, w]``.

    Level 0 (the start noise) is drawn per latent frame in frame order from ``seed``
    (:class:`SequentialNoise`); the re-noising noise of later levels from a second
    generator, chunk after chunk and level after level, in the order the sampler asks."""

    def __init__(self, shape: tuple[int, int, int, int], seed: int) -> None:
        self.shape = shape  # [B, C, h, w]
        self.start = SequentialNoise(shape, seed)
        self.generator = torch.Generator().manual_seed(seed + RENOISE_SALT)

    def __call__(self, level: int, start: int, stop: int) -> Tensor:
        if level == 0:
            return self.start(start, stop)
        b, c, h, w = self.shape
        return torch.randn((b, c, stop - start, h, w), generator=self.generator)


StudentNoiseSource = Callable[[int, int, int], Tensor]
"""``noise(level, start, stop)``, as :class:`StudentNoise`."""


class ChunkConditions:
    """``conditions(start, stop)``: the DiT's conditions for latent frames ``start .. stop
    - 1`` (:func:`~cospeech.models.i2v.chunk_conditions`), pose maps drawn for just those
    frames from ``keypoints`` ``[N, 133, 3]`` (pixels of the ``size`` frame; the last
    partial latent frame holds the last pose). ``slot`` ``[1, 4 + C, 1, h, w]``: the
    reference slot; ``ref_pose`` ``[1, 3, size, size]``; ``warped`` (a warp-conditioned
    student only) ``[1, C + 1, T, h, w]``: the warp condition of the whole video, of which
    each chunk gets latent frames ``start .. stop - 1``."""

    def __init__(
        self,
        keypoints: np.ndarray,
        size: int,
        slot: Tensor,
        ref_pose: Tensor,
        warped: Tensor | None = None,
    ) -> None:
        self.keypoints, self.size = keypoints, size
        self.slot, self.ref_pose = slot, ref_pose
        self.warped = None if warped is None else warped.to(slot.device)

    def __call__(self, start: int, stop: int) -> dict[str, Tensor]:
        first, last = chunk_video_range(start, stop)
        frames = np.minimum(np.arange(first, last), len(self.keypoints) - 1)
        maps = pose_maps(self.keypoints[frames], self.size).to(self.slot.device)
        conditions = {"pose": maps, "reference": self.slot, "ref_pose": self.ref_pose}
        if self.warped is not None:
            conditions[WARP_CONDITION] = self.warped
        return chunk_conditions(conditions, start, stop, first_frame=first)

    def check_warp(self, warp_dim: int, total: int) -> None:
        """InputError unless ``warped`` fits a student with ``warp_dim`` warp channels (0:
        none, ``warped`` must be None) over ``total`` latent frames of the slot's grid."""
        shape = (1, self.slot.shape[1], total, *self.slot.shape[-2:])
        check_warp_input(warp_dim, self.warped, shape)


@dataclass(frozen=True)
class StudentChunk:
    """Latent frames ``[start, start + latents.shape[2])``, final (``latents`` ``[1, C, n,
    h, w]``), and the latent frames the KV cache held after it (``cached``; the last chunk
    is not committed) and at most while it was sampled (``held``: cache + the chunk's state
    and noise)."""

    start: int
    latents: Tensor
    cached: int
    held: int


class StudentSampler:
    """Iterate it for :class:`StudentChunk` s, in order (see the module docstring).

    ``model``: the student DiT; ``sampling``: its settings; ``conditions``:
    :class:`ChunkConditions` (with ``warped`` exactly when the student has warp channels:
    InputError otherwise); ``total``: latent frames; ``levels``: how many levels of the
    step list (1 .. all); ``shift``: the step list's warp; ``noise``: :class:`StudentNoise`
    (or a source like it); ``plans``: :class:`ChunkPlans` (None: dense attention);
    ``on_level``: called after every level of every chunk (it may raise to stop).
    """

    def __init__(
        self,
        model: VideoDiT,
        sampling: StudentSampling,
        conditions: ChunkConditions,
        total: int,
        *,
        levels: int,
        shift: float,
        noise: StudentNoiseSource,
        plans: ChunkPlans | None = None,
        on_level: Callable[[], None] | None = None,
    ) -> None:
        conditions.check_warp(model.config.warp_dim, total)
        self.model, self.sampling, self.conditions = model, sampling, conditions
        self.total, self.noise, self.plans, self.on_level = total, noise, plans, on_level
        self.sigmas = step_list_sigmas(sampling.steps, shift)[:levels].tolist()

    def new_cache(self) -> KVCache:
        """An empty KV cache of the student's sink and (inference) window."""
        settings = self.sampling
        return KVCache(self.model.config.num_layers, sink_chunks=settings.cache_sink,
                       window_chunks=cache_window_chunks(settings))  # fmt: skip

    @torch.no_grad()
    def __iter__(self) -> Iterator[StudentChunk]:
        device = next(self.model.parameters()).device
        cache = self.new_cache()
        levels = [torch.full((1,), sigma, device=device) for sigma in self.sigmas]
        times = [sigma_to_timestep(level) for level in levels]
        zero = torch.zeros(1, device=device)
        step = self.sampling.chunk_frames
        for start in range(0, self.total, step):
            stop = min(start + step, self.total)
            where = self.conditions(start, stop)
            options: dict = {"kv_cache": cache}
            if self.plans is not None:
                options["plan"] = self.plans(cache.frame_indices, range(start, stop))
            denoise = ConditionedFlow(functools.partial(self.model, **options))
            x = self.noise(0, start, stop).to(device)
            for index, level in enumerate(levels):
                x0 = flow_to_x0(x, denoise(x, times[index], **where), level)
                if index + 1 < len(levels):
                    eps = self.noise(index + 1, start, stop).to(device)
                    x = add_noise(x0, eps, self.sigmas[index + 1])
                if self.on_level is not None:
                    self.on_level()
            held = cache.cached_frames + 3 * (stop - start)  # the cache + x, x0 and noise
            if stop < self.total:  # the last chunk's keys would never be read
                commit = functools.partial(self.model, cache_update=True, **options)
                ConditionedFlow(commit)(x0, zero, **where)
            yield StudentChunk(start, x0, cache.cached_frames, held)
