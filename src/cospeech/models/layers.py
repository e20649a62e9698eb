"""Small building blocks of the video DiT: norms, timestep embedding, modulation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim (computed in float32), with a learned scale."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., dim]`` -> same shape and dtype."""
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype; returns the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` ``[B]`` -> ``[B, dim]`` = ``[cos(t w), sin(t w)]``, ``w_i = 10000^(-i / (dim/2))``.

    Computed in float64 (timesteps up to 1000 need the precision), returned as float32.
    """
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` in float32 (``x`` ``[B, L, C]``, shift/scale ``[B, 1, C]``)."""
    return (x.float() * (1 + scale) + shift).to(x.dtype)


def gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``x + update * gate`` in float32, returned in ``x``'s dtype."""
    return (x.float() + update.float() * gate).to(x.dtype)
