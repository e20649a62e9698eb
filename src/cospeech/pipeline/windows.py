"""Long videos: overlapping windows fused at every denoising step (method.md §4).

A video longer than the teacher's window is one latent sequence ``[B, C, T, h, w]`` cut
into windows of ``W`` latent frames that overlap by ``overlap``; the last window is
aligned to the end. At every step the flow model runs on each window (all with the same
reference) and the predictions are blended per latent frame with MimicMotion's tent
weights ``w(j) = min((j + .5) 2 / W, 2 - (j + .5) 2 / W)``, normalised by their sum, so
the fused flow is a convex combination of window predictions. Windows run one at a time:
memory holds one window's activations plus the two full-length accumulators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from cospeech.diffusion import sample_euler
from cospeech.diffusion.schedule import timestep_to_sigma
from cospeech.errors import InputError

WindowFlow = Callable[[Tensor, Tensor, int], Tensor]
"""``flow(x_window [B, C, W, h, w], t [B], start) -> flow [B, C, W, h, w]``: the (guided)
model on the window that starts at latent frame ``start``."""


def tent_weights(length: int) -> Tensor:
    """MimicMotion's tent ``[length]``: ``min((j + .5) 2 / L, 2 - (j + .5) 2 / L)``, float64."""
    if length < 1:
        raise InputError(f"window length must be >= 1, got {length}")
    j = torch.arange(length, dtype=torch.float64) + 0.5
    return torch.minimum(j * 2 / length, 2 - j * 2 / length)


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """First latent frame of each window covering ``total`` frames: a stride of
    ``window - overlap``, the last window ending at ``total`` (one window if it fits)."""
    if window < 1 or not 0 <= overlap < window:
        raise InputError(f"need window >= 1 and 0 <= overlap < window, got {window}, {overlap}")
    if total < 1:
        raise InputError(f"need at least one latent frame, got {total}")
    if total <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, total - window, stride))
    return [*starts, total - window]


@dataclass(frozen=True)
class WindowPlan:
    """Windows of ``window`` latent frames over ``total``, ``overlap`` frames shared."""

    total: int
    window: int
    overlap: int

    @property
    def starts(self) -> list[int]:
        return window_starts(self.total, self.window, self.overlap)

    @property
    def length(self) -> int:
        """Latent frames per window (``total`` when one window covers everything)."""
        return min(self.window, self.total)


class FusedWindows:
    """A flow model over the whole latent sequence built from a per-window flow.

    Call it as the samplers call a model: ``fused(x [B, C, T, h, w], t [B]) -> flow``.
    ``progress`` (optional) is called once per window evaluation.
    """

    def __init__(
        self, window_flow: WindowFlow, plan: WindowPlan, progress: Callable[[], None] | None = None
    ) -> None:
        self.window_flow = window_flow
        self.plan = plan
        self.progress = progress
        self.weights = tent_weights(plan.length)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if x.shape[2] != self.plan.total:
            raise InputError(f"latents have {x.shape[2]} frames, the plan {self.plan.total}")
        length = self.plan.length
        weights = self.weights.to(device=x.device, dtype=torch.float32).view(1, 1, -1, 1, 1)
        total = torch.zeros_like(x, dtype=torch.float32)
        norm = torch.zeros(self.plan.total, dtype=torch.float32, device=x.device)
        for start in self.plan.starts:
            flow = self.window_flow(x[:, :, start : start + length], t, start)
            total[:, :, start : start + length] += weights * flow.float()
            norm[start : start + length] += weights.flatten()
            if self.progress is not None:
                self.progress()
        return (total / norm.view(1, 1, -1, 1, 1)).to(x.dtype)


NoiseSource = Callable[[int, int], Tensor]
"""``noise(start, stop) -> [B, C, stop - start, h, w]``: the starting noise of latent frames
``[start, stop)``; asked for in increasing order (each window's range once)."""


class SequentialNoise:
    """Per-latent-frame noise drawn in frame order from one seeded generator, keeping only
    the frames of the current window (memory does not grow with the video).

    Frame ``i`` gets the ``i``-th draw of shape ``[1, C, 1, h, w]``: the same whatever the
    window layout, so a frame's noise does not depend on the video's length.
    """

    def __init__(self, shape: tuple[int, int, int, int], seed: int) -> None:
        self.shape = shape  # [B, C, h, w]
        self.generator = torch.Generator().manual_seed(seed)
        self.first = 0  # latent frame index of frames[0]
        self.frames: list[Tensor] = []

    def __call__(self, start: int, stop: int) -> Tensor:
        if start < self.first:
            raise InputError(f"noise for latent frame {start} was already dropped")
        del self.frames[: start - self.first]
        self.first = start
        while self.first + len(self.frames) < stop:
            b, c, h, w = self.shape
            self.frames.append(torch.randn((b, c, 1, h, w), generator=self.generator))
        return torch.cat(self.frames[: stop - start], dim=2)


@dataclass(frozen=True)
class WindowResult:
    """Latent frames ``[start, start + latents.shape[2])`` finished by one window of a
    :class:`WindowChain` (the frames it did not share with the window before)."""

    start: int
    latents: Tensor
    held: int  # latent frames held while it was sampled (window state + shared frames)


class WindowChain:
    """Long videos window after window, in order, for streaming (docs/generate.md).

    The windows are :class:`WindowPlan`'s. Each window is sampled on its own with Euler
    steps over ``sigmas``; the ``k`` frames it shares with the window before (``overlap``,
    more for the last, end-aligned window) are held to that window's result: before every
    model call they are replaced by it re-noised to the current level with the noise they
    started from, ``(1 - sigma) x0 + sigma eps`` (RePaint-style inpainting along time), and
    at the end they are that result exactly. Only the new frames are returned, so a window's
    frames are final as soon as it is done; memory holds one window.

    ``on_step`` (optional) runs after every Euler step (``(window index, step index)``); it
    may raise to stop early.
    """

    def __init__(
        self,
        window_flow: WindowFlow,
        plan: WindowPlan,
        noise: NoiseSource,
        sigmas: Tensor,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.window_flow = window_flow
        self.plan = plan
        self.noise = noise
        self.sigmas = sigmas
        self.on_step = on_step

    def __iter__(self) -> Iterator[WindowResult]:
        length, done = self.plan.length, 0
        previous: Tensor | None = None  # the last window's latents
        for index, start in enumerate(self.plan.starts):
            eps = self.noise(start, start + length)
            shared = done - start
            known = None if previous is None else previous[:, :, previous.shape[2] - shared :]
            model = _HeldPrefix(self.window_flow, start, known, eps[:, :, :shared])

            def step(state, window=index) -> None:
                if self.on_step is not None:
                    self.on_step(window, state.index)

            x = sample_euler(model, eps, sigmas=self.sigmas, callback=step)
            if known is not None:
                x = torch.cat([known, x[:, :, shared:]], dim=2)
            held = eps.shape[2] + x.shape[2] + (0 if known is None else known.shape[2])
            previous, done = x, start + length
            yield WindowResult(start + shared, x[:, :, shared:], held)


class _HeldPrefix:
    """A window's flow with its first ``known.shape[2]`` frames replaced by ``known``
    re-noised to the level of the call (see :class:`WindowChain`)."""

    def __init__(self, flow: WindowFlow, start: int, known: Tensor | None, eps: Tensor) -> None:
        self.flow, self.start, self.known, self.eps = flow, start, known, eps

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self.known is not None:
            sigma = float(timestep_to_sigma(t[0]))
            shared = self.known.shape[2]
            held = (1 - sigma) * self.known + sigma * self.eps
            x = torch.cat([held.to(x.dtype), x[:, :, shared:]], dim=2)
        return self.flow(x, t, self.start)
