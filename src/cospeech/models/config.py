"""The video DiT's configuration: every constant of the architecture, plus named presets.

The Wan2.1 presets reproduce the original release (``Wan-Video/Wan2.1``); ``demo`` is the
small model trained here (sized by measurement, see docs/benchmarks/models.md); ``tiny`` is
for unit tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cospeech.config import load_config
from cospeech.errors import InputError
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE


@dataclasses.dataclass(frozen=True)
class VideoDiTConfig:
    """Architecture of :class:`~cospeech.models.dit.VideoDiT`.

    ``in_dim`` counts every input channel: for image-to-video models the noisy latent
    (``out_dim`` channels) is followed by the conditioning channels (mask + reference
    latent), ``cond_dim`` of them, and last by ``warp_dim`` channels of the reference
    warped to every frame's pose (:mod:`cospeech.models.warp_condition`; 0 = none).
    ``text_dim == 0`` means no text cross-attention, ``image_dim == 0`` means no CLIP image
    tokens; the parameters of an absent path do not exist. Empty ``pose_channels`` /
    ``ref_pose_channels`` remove the pose encoders.
    """

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    image_dim: int = 0
    image_tokens: int = 257
    freq_dim: int = 256
    cross_attn_norm: bool = True
    qk_norm: bool = True
    eps: float = 1e-6
    image_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_max_positions: int = 1024
    vae_stride: tuple[int, int, int] = (TIME_STRIDE, SPACE_STRIDE, SPACE_STRIDE)
    pose_in_channels: int = 3
    pose_channels: tuple[int, ...] = (16, 32, 64, 128)
    ref_pose_channels: tuple[int, ...] = (16, 32, 64)
    warp_dim: int = 0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise InputError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise InputError(f"head_dim {self.head_dim} must be even and at least 6 (3D RoPE)")
        if self.warp_dim < 0:
            raise InputError(f"warp_dim must be >= 0 (0 = no warp channels), got {self.warp_dim}")
        if self.out_dim + self.warp_dim > self.in_dim:
            raise InputError(
                f"out_dim {self.out_dim} + warp_dim {self.warp_dim} exceeds in_dim {self.in_dim}"
            )
        for name in ("dim", "ffn_dim", "num_layers", "in_dim", "out_dim", "freq_dim"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.freq_dim % 2:
            raise InputError(f"freq_dim {self.freq_dim} must be even")
        if self.text_dim < 0 or self.image_dim < 0:
            raise InputError("text_dim and image_dim must be >= 0 (0 = path absent)")
        if self.pose_channels:
            needed = _log2_stages(self.pose_spatial_factor, "pose encoder spatial factor")
            if len(self.pose_channels) != needed:
                raise InputError(
                    f"pose_channels needs {needed} entries (one stride-2 stage each to reach "
                    f"/{self.pose_spatial_factor}), got {len(self.pose_channels)}"
                )
        if self.ref_pose_channels and self.cond_dim:
            needed = _log2_stages(self.vae_stride[1], "VAE spatial stride")
            if len(self.ref_pose_channels) != needed:
                raise InputError(
                    f"ref_pose_channels needs {needed} entries (one stride-2 stage each to "
                    f"reach /{self.vae_stride[1]}), got {len(self.ref_pose_channels)}"
                )
        if self.vae_stride[1] != self.vae_stride[2] or self.patch_size[1] != self.patch_size[2]:
            raise InputError("only square spatial VAE strides and patches are supported")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def cond_dim(self) -> int:
        """Conditioning channels between the noisy latent and the warp channels (4 mask +
        16 reference for Wan I2V)."""
        return self.in_dim - self.out_dim - self.warp_dim

    @property
    def has_text(self) -> bool:
        return self.text_dim > 0

    @property
    def has_image_tokens(self) -> bool:
        return self.image_dim > 0

    @property
    def has_cross_attention(self) -> bool:
        return self.has_text or self.has_image_tokens

    @property
    def has_pose_encoder(self) -> bool:
        return bool(self.pose_channels)

    @property
    def has_ref_pose_encoder(self) -> bool:
        return bool(self.ref_pose_channels) and self.cond_dim > 0

    @property
    def pose_spatial_factor(self) -> int:
        """Pixels per token side: VAE stride x patch (8 x 2 = 16 for Wan)."""
        return self.vae_stride[1] * self.patch_size[1]

    @property
    def rope_axis_dims(self) -> tuple[int, int, int]:
        """Head-dim channels rotated by the t, h, w positions (44/42/42 for head dim 128)."""
        hw = 2 * (self.head_dim // 6)
        return (self.head_dim - 2 * hw, hw, hw)


def _log2_stages(factor: int, what: str) -> int:
    stages = round(math.log2(factor)) if factor > 0 else -1
    if stages < 1 or 2**stages != factor:
        raise InputError(f"{what} {factor} must be a power of two >= 2")
    return stages


_WAN_1_3B = dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30)
_WAN_14B = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)

VIDEO_DIT_PRESETS: dict[str, VideoDiTConfig] = {
    "tiny": VideoDiTConfig(
        dim=64,
        ffn_dim=128,
        num_heads=4,
        num_layers=2,
        in_dim=36,
        out_dim=16,
        text_dim=0,
        freq_dim=32,
        pose_channels=(4, 8, 8, 16),
        ref_pose_channels=(4, 8, 8),
    ),
    "demo": VideoDiTConfig(
        dim=384,
        ffn_dim=1152,
        num_heads=6,
        num_layers=8,
        in_dim=36,
        out_dim=16,
        text_dim=0,
        freq_dim=128,
        pose_channels=(8, 16, 32, 64),
        ref_pose_channels=(8, 16, 32),
    ),
    "wan2.1-t2v-1.3b": VideoDiTConfig(**_WAN_1_3B, in_dim=16, out_dim=16),
    "wan2.1-t2v-14b": VideoDiTConfig(**_WAN_14B, in_dim=16, out_dim=16),
    "wan2.1-i2v-14b": VideoDiTConfig(**_WAN_14B, in_dim=36, out_dim=16, image_dim=1280),
}


def load_video_dit_config(
    source: str | Path | Mapping[str, Any] | None = "demo", overrides: list[str] | None = None
) -> VideoDiTConfig:
    """A config from a preset name, a YAML file or a mapping, plus ``key=value`` overrides."""
    return load_config(VideoDiTConfig, source, VIDEO_DIT_PRESETS, overrides)
