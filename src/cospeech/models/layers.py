"""Small building blocks of the video DiT: norms, timestep embedding, modulation.

Precision: the DiT's residual stream, norms, modulation, RoPE and attention run in float32
whatever the weights' dtype; only the linear layers' and convolutions' inputs are cast to
their weights' dtype (:func:`to_weight_dtype`), as autocast would. With bfloat16 weights
that is two casts per linear group instead of a round trip at every float32 step (on a CPU
the few-token student's time goes to per-operation overhead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim, with a learned scale; float32 in and out
    (other dtypes are computed in float32)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., dim]`` -> same shape, float32."""
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed * self.weight  # a 16-bit weight is read as float32 by the product


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


def to_weight_dtype(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``x`` in the dtype of ``layer``'s weight (the input of a linear or convolution)."""
    return x.to(layer.weight.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` in float32 (``x`` ``[B, L, C]`` float32, shift/scale
    ``[B, 1, C]`` float32): one fused ``addcmul``."""
    return torch.addcmul(shift, x, 1 + scale)


def gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``x + update * gate`` (``x``, ``gate`` float32; ``update`` of any float dtype, read as
    float32 by the one fused ``addcmul``) -> float32."""
    return torch.addcmul(x, update, gate)
