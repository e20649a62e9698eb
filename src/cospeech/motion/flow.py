"""Conditional flow matching for the body/hand frames (rectified-flow convention).

``x_t = (1 - t) * noise + t * data``, target velocity ``data - noise``; sampling integrates
``dx/dt = v(x_t, t)`` from noise at ``t = 0`` to data at ``t = 1`` with Euler steps.
"""

from __future__ import annotations

import torch

from cospeech.motion.model import FlowDenoiser


def flow_matching_loss(
    denoiser: FlowDenoiser,
    data: torch.Tensor,
    condition: torch.Tensor,
    context_mask: torch.Tensor,
    weight: torch.Tensor,
) -> torch.Tensor:
    """Mean squared velocity error over frames where ``weight [B, T]`` is positive and that
    are not context. ``data [B, T, Y]`` standardised body values; noise and times are drawn
    from torch's global RNG."""
    noise = torch.randn_like(data)
    t = torch.rand(data.shape[0], device=data.device)
    x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * data
    velocity = denoiser(x_t, t, condition, data, context_mask)
    w = weight * (~context_mask).to(weight.dtype)
    error = ((velocity - (data - noise)) ** 2).mean(dim=-1)
    return (error * w).sum() / w.sum().clamp_min(1.0)


@torch.no_grad()
def sample_flow(
    denoiser: FlowDenoiser,
    condition: torch.Tensor,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    steps: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Euler integration from Gaussian noise (standard deviation ``temperature``) ->
    standardised body values ``[B, T, Y]``; context frames are returned as given."""
    x = torch.randn(context.shape, generator=generator, device=context.device) * temperature
    for i in range(steps):
        t = torch.full((context.shape[0],), i / steps, device=context.device)
        x = x + denoiser(x, t, condition, context, context_mask) / steps
    return torch.where(context_mask[..., None], context, x)


def sample_continuation(
    denoiser: FlowDenoiser,
    condition: torch.Tensor,
    context: torch.Tensor,
    steps: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Body values ``[B, T, Y]`` for ``condition [B, T, D]`` that continue ``context
    [B, P, Y]``: the first ``P <= T`` frames are the context (``P = 0``: none), the rest
    sampled by :func:`sample_flow`."""
    b, frames = condition.shape[:2]
    known = context.shape[1]
    values = context.new_zeros(b, frames, context.shape[2])
    values[:, :known] = context
    mask = torch.zeros(b, frames, dtype=torch.bool, device=context.device)
    mask[:, :known] = True
    return sample_flow(denoiser, condition, values, mask, steps, generator, temperature)
