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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

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
