"""UniAnimate-style pose conditioning: rendered pose maps -> additive DiT inputs.

:class:`PoseVideoEncoder` maps the pose video ``[B, 3, F_video, H_px, W_px]`` onto the
DiT token grid ``[B, dim, F_lat, H_px/16, W_px/16]`` (Wan: VAE /8 then patch /2); its
output is added to the patch embedding. Time follows the causal VAE exactly: latent frame
0 is video frame 0 alone, latent frame ``i >= 1`` is video frames ``4i-3 .. 4i``. The
first layer has kernel = stride = 4 in time, so each latent frame sees only its own
video frames; a clip that starts at video frame 0 (``F_video = 1 + 4k``) is front-padded
with 3 copies of frame 0, a continuation chunk (``F_video = 4k``, frames ``4s-3 ..`` of a
chunk starting at latent frame ``s``) is not padded. Encoding chunk by chunk therefore
gives exactly the slices of the whole-clip encoding (needed by the KV-cache path).

:class:`RefPoseEncoder` maps the reference image's pose map ``[B, 3, H_px, W_px]`` to the
latent grid ``[B, cond_dim, H_px/8, W_px/8]``; the DiT adds it to the conditioning channels
(``x[:, out_dim:]``: mask + reference latent for Wan I2V) of latent frame 0, the frame
that carries the reference image.

Both end in a zero-initialised 1x1 projection, so a freshly attached encoder adds exactly
zero and a loaded Wan model behaves as released until the encoders are trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cospeech.errors import InputError


class PoseVideoEncoder(nn.Module):
    """Conv3d stack: pose video -> token-grid features ``[B, dim, F_lat, h, w]``."""

    def __init__(
        self, in_channels: int, channels: tuple[int, ...], out_dim: int, time_stride: int
    ) -> None:
        super().__init__()
        self.time_stride = time_stride
        self.spatial_factor = 2 ** len(channels)
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(channels):
            kernel_t = time_stride if index == 0 else 1
            layers += [
                nn.Conv3d(
                    previous,
                    width,
                    kernel_size=(kernel_t, 3, 3),
                    stride=(kernel_t, 2, 2),
                    padding=(0, 1, 1),
                ),
                nn.SiLU(),
            ]
            previous = width
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Conv3d(previous, out_dim, kernel_size=1)
        self.init_weights()

    def init_weights(self) -> None:
        """Default init for the stages, zeros for the output projection."""
        for module in self.stages:
            if isinstance(module, nn.Conv3d):
                module.reset_parameters()
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        """``pose`` ``[B, C, F_video, H_px, W_px]`` -> ``[B, dim, F_lat, H_px/s, W_px/s]``."""
        if pose.ndim != 5:
            raise InputError(f"pose video: expected [B, C, F, H, W], got {list(pose.shape)}")
        frames = pose.shape[2]
        stride = self.time_stride
        if frames % stride == 1:
            pose = torch.cat([pose[:, :, :1].expand(-1, -1, stride - 1, -1, -1), pose], dim=2)
        elif frames % stride != 0 or frames == 0:
            raise InputError(
                f"pose video: {frames} frames; expected 1 + {stride}k (clip start) "
                f"or {stride}k (continuation chunk)"
            )
        side = self.spatial_factor
        if pose.shape[3] % side or pose.shape[4] % side:
            raise InputError(
                f"pose video: {pose.shape[3]}x{pose.shape[4]} pixels is not a multiple of {side}"
            )
        return self.proj(self.stages(pose))


class RefPoseEncoder(nn.Module):
    """Conv2d stack: reference pose map -> latent-grid conditioning ``[B, cond_dim, h, w]``."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        self.spatial_factor = 2 ** len(channels)
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.SiLU()]
            previous = width
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Conv2d(previous, out_dim, kernel_size=1)
        self.init_weights()

    def init_weights(self) -> None:
        """Default init for the stages, zeros for the output projection."""
        for module in self.stages:
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, ref_pose: torch.Tensor) -> torch.Tensor:
        """``ref_pose`` ``[B, C, H_px, W_px]`` -> ``[B, cond_dim, H_px/s, W_px/s]``."""
        if ref_pose.ndim != 4:
            raise InputError(f"reference pose: expected [B, C, H, W], got {list(ref_pose.shape)}")
        side = self.spatial_factor
        if ref_pose.shape[2] % side or ref_pose.shape[3] % side:
            raise InputError(
                f"reference pose: {ref_pose.shape[2]}x{ref_pose.shape[3]} pixels is not a "
                f"multiple of {side}"
            )
        return self.proj(self.stages(ref_pose))


def pad_to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Zero-pad dim 1 of ``x`` at the front up to ``channels``."""
    return F.pad(x, (0, 0) * (x.ndim - 2) + (channels - x.shape[1], 0))
