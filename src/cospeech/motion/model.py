"""The audio -> keypoint-offset model: an audio encoder, a face regression head and a
flow-matching head for the body and hands.

Shapes: ``B`` batch, ``T`` video frames, ``M = MEL_PER_FRAME * n_mels`` stacked log-mel
values per frame, ``F = 2 * len(FACE_POINTS)`` face values, ``Y = 2 * len(BODY_POINTS)``
body values, ``D`` the model width. Every value the heads see or produce is standardised
with the per-dimension statistics held in the model's buffers (fitted on the training set).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cospeech.motion.config import MEL_PER_FRAME, MotionModelConfig
from cospeech.motion.normalize import BODY_POINTS, FACE_POINTS
from cospeech.pose.schema import NUM_KEYPOINTS

FACE_DIM = 2 * len(FACE_POINTS)
BODY_DIM = 2 * len(BODY_POINTS)
TIME_FREQUENCIES = 32  # sinusoidal features of the flow time t
TIME_MAX_PERIOD = 1000.0
STD_FLOOR = 1e-3  # smallest standard deviation used to standardise a value


def streaming_mask(frames: int, window: int, device: torch.device) -> torch.Tensor:
    """``[T, T]`` bool, True where query ``t`` may attend key ``s``: ``t - window <= s <= t``."""
    t = torch.arange(frames, device=device)
    lag = t[:, None] - t[None, :]
    return (lag >= 0) & (lag <= window)


class EncoderBlock(nn.Module):
    """Pre-norm transformer layer: masked self-attention then a GELU MLP."""

    def __init__(self, config: MotionModelConfig) -> None:
        super().__init__()
        dim = config.dim
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, config.ff_mult * dim), nn.GELU(), nn.Linear(config.ff_mult * dim, dim)
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]``, ``allowed [B, 1, T, T]`` bool -> ``[B, T, D]``."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed
        )
        x = x + self.dropout(self.out(attn.transpose(1, 2).reshape(b, t, d)))
        return x + self.dropout(self.ff(self.norm2(x)))


class AudioEncoder(nn.Module):
    """Stacked log-mel ``[B, T, M]`` -> features ``[B, T, D]``.

    Offline: bidirectional attention over the valid frames. Streaming: causal attention with
    a left window of ``stream_window`` frames; the only look into the future is the input
    conv's ``lookahead_frames``.
    """

    def __init__(self, config: MotionModelConfig) -> None:
        super().__init__()
        self.config = config
        self.input = nn.Linear(MEL_PER_FRAME * config.n_mels, config.dim)
        self.mode = nn.Embedding(2, config.dim)
        kernel = config.conv_left + 1 + config.lookahead_frames
        self.conv = nn.Conv1d(config.dim, config.dim, kernel)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)

    def forward(
        self, mel: torch.Tensor, streaming: bool, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mel [B, T, M]`` (standardised), ``valid [B, T]`` bool (None: all valid)."""
        cfg = self.config
        t = mel.shape[1]
        x = self.input(mel) + self.mode.weight[int(streaming)]
        if valid is not None:
            x = x * valid[..., None]
        x = F.pad(x.transpose(1, 2), (cfg.conv_left, cfg.lookahead_frames))
        x = F.gelu(self.conv(x)).transpose(1, 2)
        if streaming:
            allowed = streaming_mask(t, cfg.stream_window, mel.device)[None, None]
        else:
            allowed = torch.ones(1, 1, t, t, dtype=torch.bool, device=mel.device)
        if valid is not None:
            allowed = allowed & valid[:, None, None, :]
            allowed = allowed | torch.eye(t, dtype=torch.bool, device=mel.device)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)


def time_features(t: torch.Tensor) -> torch.Tensor:
    """Flow times ``[B]`` in [0, 1] -> sinusoidal features ``[B, 2 * TIME_FREQUENCIES]``."""
    freqs = torch.exp(
        -math.log(TIME_MAX_PERIOD)
        * torch.arange(TIME_FREQUENCIES, device=t.device, dtype=torch.float32)
        / TIME_FREQUENCIES
    )
    angles = t[:, None].float() * TIME_MAX_PERIOD * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class FlowBlock(nn.Module):
    """Residual dilated conv block, modulated (scale, shift) by the flow-time embedding."""

    def __init__(self, dim: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.conv = nn.Conv1d(dim, dim, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.mix = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """``h [B, T, H]``, ``time [B, H]`` -> ``[B, T, H]``."""
        scale, shift = self.modulation(time)[:, None].chunk(2, dim=-1)
        x = self.norm(h) * (1 + scale) + shift
        x = F.gelu(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return h + self.mix(x)


class FlowDenoiser(nn.Module):
    """Velocity field of conditional flow matching over a window of body frames.

    Context frames (``context_mask``) are given clean and flagged; the rest are the noisy
    sample ``x_t``. Dilated convs make it work on windows of any length.
    """

    def __init__(self, config: MotionModelConfig) -> None:
        super().__init__()
        hidden = config.flow_dim
        self.input = nn.Linear(BODY_DIM + 1, hidden)
        self.condition = nn.Linear(config.dim, hidden)
        self.time = nn.Sequential(
            nn.Linear(2 * TIME_FREQUENCIES, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.blocks = nn.ModuleList(
            FlowBlock(hidden, config.flow_kernel, 2**i) for i in range(config.flow_blocks)
        )
        self.norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, BODY_DIM)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        condition: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``x_t [B, T, Y]``, ``t [B]``, ``condition [B, T, D]``, ``context [B, T, Y]``,
        ``context_mask [B, T]`` bool -> velocity ``[B, T, Y]``."""
        flag = context_mask[..., None].to(x_t.dtype)
        x = torch.where(context_mask[..., None], context, x_t)
        h = self.input(torch.cat([x, flag], dim=-1)) + self.condition(condition)
        time = self.time(time_features(t))
        for block in self.blocks:
            h = block(h, time)
        return self.output(self.norm(h))


class MotionModel(nn.Module):
    """Audio + reference pose (+ style) -> face offsets, confidences, and the body flow."""

    def __init__(self, config: MotionModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.encoder = AudioEncoder(config)
        self.reference = nn.Sequential(
            nn.Linear(NUM_KEYPOINTS * 3, dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.style = nn.Linear(config.style_dim, dim)
        self.no_style = nn.Parameter(torch.zeros(dim))
        self.face_head = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, FACE_DIM)
        )
        self.confidence_head = nn.Linear(dim, NUM_KEYPOINTS)
        self.flow = FlowDenoiser(config)
        stats = {
            "mel_mean": MEL_PER_FRAME * config.n_mels, "mel_std": MEL_PER_FRAME * config.n_mels,
            "face_mean": FACE_DIM, "face_std": FACE_DIM, "body_mean": BODY_DIM,
            "body_std": BODY_DIM,
        }  # fmt: skip
        for name, size in stats.items():
            fill = torch.ones(size) if name.endswith("std") else torch.zeros(size)
            self.register_buffer(name, fill)

    def set_statistics(self, stats: dict[str, torch.Tensor]) -> None:
        """Copy per-dimension means and standard deviations (floored) into the buffers."""
        for name, value in stats.items():
            value = value.float()
            if name.endswith("std"):
                value = value.clamp_min(STD_FLOOR)
            getattr(self, name).copy_(value)

    def standardize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def condition(
        self,
        mel: torch.Tensor,
        reference: torch.Tensor,
        style: torch.Tensor | None,
        streaming: bool,
        valid: torch.Tensor | None = None,
        style_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-frame conditioning ``[B, T, D]`` from raw stacked log-mel ``mel [B, T, M]``,
        normalised ``reference [B, 133, 3]``, ``style [B, S]`` (None: no style; rows where
        ``style_mask [B]`` is False also use the no-style embedding)."""
        h = self.encoder(self.standardize_mel(mel), streaming, valid)
        ref = self.reference(reference.flatten(1))
        if style is None:
            sty = self.no_style.expand(mel.shape[0], -1)
        else:
            sty = self.style(style)
            if style_mask is not None:
                sty = torch.where(style_mask[:, None], sty, self.no_style)
        return h + (ref + sty)[:, None]

    def face(self, condition: torch.Tensor) -> torch.Tensor:
        """Standardised face offsets ``[B, T, F]``."""
        return self.face_head(condition)

    def confidence_logits(self, condition: torch.Tensor) -> torch.Tensor:
        """Per-keypoint visibility logits ``[B, T, 133]``."""
        return self.confidence_head(condition)
