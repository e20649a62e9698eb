"""The video VAE interface shared by the Wan2.1 VAE and our TinyVideoVAE.

The strides and the frame counts they allow are :mod:`cospeech.latent_geometry`'s.

Frames are ``[B, 3, F, H, W]`` in [-1, 1] with ``F = 1 + 4k`` and ``H, W`` multiples of 8;
latents are ``[B, C, 1 + (F - 1) / 4, H / 8, W / 8]``, normalised per channel (zero mean,
unit variance on the training data), the form the video DiT works on. Frame 0 has a latent
frame of its own; every later latent frame covers 4 video frames and depends only on
frames up to its own (causal), which is what makes chunked streaming possible.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from cospeech.errors import InputError
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE, latent_frames


class DecodeStream(ABC):
    """Decodes latent frames chunk by chunk, carrying the causal state between chunks.

    The frames of all chunks, concatenated along time, equal one ``decode`` of all latents:
    the first chunk of ``n`` latent frames gives ``1 + 4 (n - 1)`` frames, later ones ``4 n``.
    """

    @abstractmethod
    def push(self, latents: Tensor) -> Tensor:
        """Latents ``[B, C, n, h, w]`` (n >= 1) -> frames ``[B, 3, f, 8h, 8w]`` in [-1, 1]."""


class EncodeStream(ABC):
    """Encodes frames chunk by chunk, carrying the causal state between chunks.

    The first chunk holds ``1 + 4m`` frames (m >= 0) and gives ``1 + m`` latent frames;
    later chunks hold ``4m`` frames (m >= 1) and give ``m``.
    """

    @abstractmethod
    def push(self, frames: Tensor) -> Tensor:
        """Frames ``[B, 3, f, H, W]`` -> normalised latents ``[B, C, n, H/8, W/8]``."""


class VideoVAE(ABC):
    """A causal video autoencoder with strides 4 (time, frame 0 alone) and 8 (space)."""

    time_stride: int = TIME_STRIDE
    space_stride: int = SPACE_STRIDE

    @property
    @abstractmethod
    def latent_channels(self) -> int:
        """Channels ``C`` of the latents."""

    @abstractmethod
    def encode(self, frames: Tensor) -> Tensor:
        """Frames ``[B, 3, F, H, W]`` in [-1, 1] -> normalised latents ``[B, C, T, H/8, W/8]``."""

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents ``[B, C, T, h, w]`` -> frames ``[B, 3, 1 + 4(T-1), 8h, 8w]``."""

    @abstractmethod
    def encode_stream(self) -> EncodeStream:
        """A fresh chunked encoder (see :class:`EncodeStream`)."""

    @abstractmethod
    def decode_stream(self) -> DecodeStream:
        """A fresh chunked decoder (see :class:`DecodeStream`)."""

    def latent_shape(self, frames_shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        """``[B, 3, F, H, W]`` -> ``[B, C, 1 + (F - 1) / 4, H / 8, W / 8]``."""
        batch, _, num_frames, height, width = frames_shape
        return (
            batch,
            self.latent_channels,
            latent_frames(num_frames, self.time_stride),
            height // self.space_stride,
            width // self.space_stride,
        )


def check_frames(
    frames: Tensor, space_stride: int = SPACE_STRIDE, time_stride: int = TIME_STRIDE
) -> None:
    """InputError unless ``frames`` is ``[B, 3, 1 + 4k, H, W]`` with ``H, W`` multiples of 8."""
    if frames.ndim != 5 or frames.shape[1] != 3:
        raise InputError(f"frames must be [B, 3, F, H, W], got shape {list(frames.shape)}")
    latent_frames(frames.shape[2], time_stride)
    check_spatial(frames.shape[3], frames.shape[4], space_stride)


def check_encode_chunk(
    frames: Tensor, first: bool, space_stride: int = SPACE_STRIDE, time_stride: int = TIME_STRIDE
) -> None:
    """InputError unless ``frames`` ``[B, 3, f, H, W]`` is an :class:`EncodeStream` chunk:
    ``f = 1 + 4m`` (m >= 0) for the ``first`` chunk, ``f = 4m`` (m >= 1) for later ones,
    ``H, W`` multiples of 8."""
    if frames.ndim != 5 or frames.shape[1] != 3:
        raise InputError(f"frames must be [B, 3, F, H, W], got {list(frames.shape)}")
    check_spatial(frames.shape[3], frames.shape[4], space_stride)
    f = frames.shape[2]
    if (first and (f - 1) % time_stride) or (not first and (f == 0 or f % time_stride)):
        need = f"1 + {time_stride}m" if first else f"{time_stride}m (m >= 1)"
        raise InputError(f"this encode chunk needs {need} frames, got {f}")


def check_spatial(height: int, width: int, space_stride: int = SPACE_STRIDE) -> None:
    """InputError unless both sides are positive multiples of ``space_stride``."""
    if (
        height < space_stride
        or width < space_stride
        or height % space_stride
        or width % space_stride
    ):
        raise InputError(f"frame size {width}x{height} must be a multiple of {space_stride}")


def check_latents(latents: Tensor, channels: int) -> None:
    """InputError unless ``latents`` is ``[B, channels, T >= 1, h, w]``."""
    if latents.ndim != 5 or latents.shape[1] != channels or latents.shape[2] < 1:
        raise InputError(
            f"latents must be [B, {channels}, T, h, w] with T >= 1, got {list(latents.shape)}"
        )
