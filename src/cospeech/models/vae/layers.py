"""Causal building blocks of the TinyVideoVAE, working on channels-last frame stacks.

Inside the autoencoder a video is a stack of frames ``[B * F, H, W, C]`` (channels last,
contiguous): per-frame spatial convolutions see ``[B * F, C, H, W]`` channels-last views,
per-pixel channel mixing is a plain matmul, and the time axis is recovered as
``[B, F, H, W, C]`` by a view. Layers that look back in time keep what they need from the
previous chunk in a :class:`CausalState`, so a video processed chunk by chunk gives the
same result as in one piece.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalState:
    """What the causal layers of one streaming pass remember between chunks.

    ``memory[layer]`` holds the last input frames a layer needs from the past; ``started``
    the layers that have seen their first chunk (the time resamplers treat frame 0 apart).
    """

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.memory: dict[nn.Module, Tensor] = {}
        self.started: set[nn.Module] = set()


def space_to_depth(x: Tensor) -> Tensor:
    """``[N, H, W, C]`` -> ``[N, H/2, W/2, 4C]``: each 2x2 block of pixels into channels."""
    n, h, w, c = x.shape
    x = x.view(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(x: Tensor) -> Tensor:
    """``[N, H, W, 4C]`` -> ``[N, 2H, 2W, C]``, the inverse of :func:`space_to_depth`."""
    n, h, w, c4 = x.shape
    x = x.view(n, h, w, 2, 2, c4 // 4).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, 2 * h, 2 * w, c4 // 4)


class FrameConv(nn.Module):
    """A 3x3 convolution applied to every frame alone (zero padding): ``[N, H, W, C]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ChannelNorm(nn.Module):
    """RMS normalisation over the channels of each pixel, with a learned gain.

    Per pixel and frame, so it never mixes time (unlike GroupNorm over a clip): causal.
    Computed in float32 whatever the input dtype (bfloat16 under autocast); returns the
    input dtype.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        out = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return out.to(x.dtype)


class CausalTimeMix(nn.Module):
    """Causal temporal convolution with a 1x1 spatial footprint.

    ``out[t] = W [x[t - k + 1], ..., x[t]] + b`` over ``k = kernel`` frames; frames before
    the start of the video are zeros. ``[B * F, H, W, C_in]`` -> ``[B * F, H, W, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.proj = nn.Linear(kernel * in_channels, out_channels)

    def forward(self, x: Tensor, state: CausalState) -> Tensor:
        if self.kernel == 1:
            return self.proj(x)
        frames = x.view(state.batch, -1, *x.shape[1:])
        num_frames = frames.shape[1]
        past = state.memory.get(self)
        if past is None:
            past = frames.new_zeros(state.batch, self.kernel - 1, *x.shape[1:])
        padded = torch.cat([past, frames], dim=1)
        state.memory[self] = padded[:, -(self.kernel - 1) :]
        windows = torch.cat([padded[:, j : j + num_frames] for j in range(self.kernel)], dim=-1)
        return self.proj(windows).flatten(0, 1)


class ResBlock(nn.Module):
    """Pre-norm residual block: a per-frame 3x3 conv, then a causal temporal mix."""

    def __init__(self, channels: int, temporal_kernel: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.conv = FrameConv(channels, channels)
        self.norm2 = ChannelNorm(channels)
        self.time_mix = CausalTimeMix(channels, channels, temporal_kernel)

    def forward(self, x: Tensor, state: CausalState) -> Tensor:
        h = self.conv(F.silu(self.norm1(x)))
        return x + self.time_mix(F.silu(self.norm2(h)), state)


class SpaceDown(nn.Module):
    """Halve height and width: 2x2 pixels to channels, then a linear map to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(4 * in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(space_to_depth(x))


class SpaceUp(nn.Module):
    """Double height and width: a linear map to ``4 * out_channels``, then channels to 2x2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, 4 * out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return depth_to_space(self.proj(x))


class TimeDown(nn.Module):
    """Group frames by ``stride`` into one latent frame; frame 0 forms a group alone.

    The first chunk of a pass is preceded by ``stride - 1`` zero frames, so frames
    ``(0), (1..4), (5..8), ...`` share a latent frame. Every chunk must then fill whole
    groups. ``[B * F, H, W, C_in]`` -> ``[B * F / stride, H, W, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(stride * in_channels, out_channels)

    def forward(self, x: Tensor, state: CausalState) -> Tensor:
        frames = x.view(state.batch, -1, *x.shape[1:])
        if self not in state.started:
            pad = frames.new_zeros(state.batch, self.stride - 1, *x.shape[1:])
            frames = torch.cat([pad, frames], dim=1)
            state.started.add(self)
        b, f, h, w, c = frames.shape
        groups = frames.view(b, f // self.stride, self.stride, h, w, c).permute(0, 1, 3, 4, 2, 5)
        return self.proj(groups.reshape(b * (f // self.stride), h, w, self.stride * c))


class TimeUp(nn.Module):
    """Expand each latent frame into ``stride`` frames; the first latent frame gives one.

    The inverse arrangement of :class:`TimeDown`: of the first latent frame of a pass only
    the last of its ``stride`` sub-frames is kept (the others stand for the zero padding).
    ``[B * T, H, W, C_in]`` -> ``[B * F, H, W, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(in_channels, stride * out_channels)

    def forward(self, x: Tensor, state: CausalState) -> Tensor:
        y = self.proj(x)
        b = state.batch
        t, h, w = y.shape[0] // b, y.shape[1], y.shape[2]
        frames = y.view(b, t, h, w, self.stride, -1).permute(0, 1, 4, 2, 3, 5)
        frames = frames.reshape(b, t * self.stride, h, w, -1)
        if self not in state.started:
            frames = frames[:, self.stride - 1 :]
            state.started.add(self)
        return frames.reshape(-1, h, w, frames.shape[-1])
