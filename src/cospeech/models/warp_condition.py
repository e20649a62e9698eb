"""The warp condition: the reference photo warped to every frame's pose, as DiT input.

The real-photo teacher (issue 13) sees, beside the pose maps and the reference slot of
:mod:`cospeech.models.i2v`, the reference warped to each target pose by the per-region
rigid MLS of :func:`cospeech.pose.warp.warp_reference`. The warped video is encoded whole
by the causal VAE (latent ``0`` = frame 0, latent ``k`` = frames ``4k-3 .. 4k``), like the
training clips, after the pixels the warp cannot know are set to :data:`WARP_FILL`
(mid-grey); a last channel says how much of each latent cell the warp does know: the
fraction of valid pixels over its ``8 x 8`` pixels and the video frames it covers. So the
condition has ``C + 1`` channels (:func:`warp_channels`), the model's ``warp_dim``.

A video of any length ``F`` is taken as the pipeline takes pose sequences
(``latent_frames(F, partial=True)`` latent frames): its last frame is held to fill the last
group of 4, as generation holds the last pose.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cospeech.errors import InputError
from cospeech.latent_geometry import latent_frames, video_frames
from cospeech.media.pixels import pixels_to_tensor
from cospeech.models.vae import VideoVAE
from cospeech.pose.warp import warp_references

WARP_FILL = 0.0
"""Value (in the VAE's [-1, 1] pixel range: mid-grey) of the pixels the warp marks invalid."""


def warp_channels(vae: VideoVAE) -> int:
    """Channels of the warp condition for ``vae``: its latent channels plus validity."""
    return vae.latent_channels + 1


def warp_video(
    image: np.ndarray, reference_keypoints: np.ndarray, keypoints: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The reference ``image`` uint8 ``[H, W, 3]`` in pose ``reference_keypoints``
    ``[133, 3]`` warped to each pose of ``keypoints`` ``[F, 133, 3]`` (pixels of ``image``):
    frames uint8 ``[F, H, W, 3]`` and validity bool ``[F, H, W]``
    (:func:`cospeech.pose.warp.warp_references`)."""
    warped = warp_references(image, reference_keypoints, keypoints)
    return np.stack([w.image for w in warped]), np.stack([w.valid for w in warped])


def hold_last_frame(frames: np.ndarray, time_stride: int) -> np.ndarray:
    """``[F, ...]`` -> ``[1 + stride * (T - 1), ...]`` for ``T = latent_frames(F,
    partial=True)``: the last frame repeated to fill the last latent frame's group."""
    total = video_frames(latent_frames(len(frames), time_stride, partial=True), time_stride)
    return np.concatenate([frames, np.repeat(frames[-1:], total - len(frames), axis=0)])


def pool_validity(valid: np.ndarray, time_stride: int, space_stride: int) -> Tensor:
    """Validity bool ``[1 + s * (T - 1), H, W]`` -> fraction of valid pixels per latent
    cell ``[T, H / space_stride, W / space_stride]`` float32: latent 0 over frame 0, latent
    ``k`` over frames ``s(k-1)+1 .. sk``, each over its ``space_stride`` square."""
    values = torch.from_numpy(np.ascontiguousarray(valid)).float()
    groups = values[1:].unflatten(0, (-1, time_stride)).mean(dim=1)
    per_frame = torch.cat([values[:1], groups])
    return F.avg_pool2d(per_frame[:, None], space_stride)[:, 0]


@torch.no_grad()
def warp_condition(vae: VideoVAE, frames: np.ndarray, valid: np.ndarray) -> Tensor:
    """The warp condition ``[1, C + 1, T, h, w]`` (on the CPU) of warped frames uint8
    ``[F, H, W, 3]`` with validity bool ``[F, H, W]`` (:func:`warp_video`): the VAE latents
    of the video with invalid pixels set to :data:`WARP_FILL`, encoded whole, then the
    fraction of valid pixels per latent cell (:func:`pool_validity`). Any ``F >= 1``: the
    last frame is held up to ``1 + 4(T - 1)`` frames, ``T = latent_frames(F,
    partial=True)``; ``H`` and ``W`` must be multiples of the VAE's space stride."""
    frames, valid = np.asarray(frames), np.asarray(valid)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise InputError(
            f"warp_condition: frames must be uint8 [F, H, W, 3], got {frames.dtype} "
            f"{list(frames.shape)}"
        )
    if valid.shape != frames.shape[:3]:
        raise InputError(
            f"warp_condition: validity {list(valid.shape)} does not fit frames "
            f"{list(frames.shape)} (expected [F, H, W])"
        )
    stride = vae.space_stride
    if frames.shape[1] % stride or frames.shape[2] % stride:
        raise InputError(
            f"warp_condition: frames of {frames.shape[2]}x{frames.shape[1]} pixels, the VAE "
            f"needs multiples of {stride}"
        )
    frames = hold_last_frame(frames, vae.time_stride)
    valid = hold_last_frame(valid.astype(bool), vae.time_stride)
    pixels = pixels_to_tensor(frames)  # [3, F, H, W]
    pixels = torch.where(torch.from_numpy(valid), pixels, WARP_FILL)
    latents = vae.encode(pixels[None]).float().cpu()
    fraction = pool_validity(valid, vae.time_stride, stride)
    return torch.cat([latents, fraction[None, None]], dim=1)


def warp_window(warped: Tensor, start: int, stop: int) -> Tensor:
    """Latent frames ``start .. stop - 1`` of a warp condition ``[B, C + 1, T, h, w]``
    (what the window or chunk of those latent frames is conditioned on)."""
    if not 0 <= start < stop <= warped.shape[2]:
        raise InputError(
            f"warped: latent frames {start}..{stop - 1} asked of a condition of "
            f"{warped.shape[2]} latent frames"
        )
    return warped[:, :, start:stop]


def check_warp_input(
    warp_dim: int, warped: Tensor | None, shape: tuple[int, ...] | None = None
) -> None:
    """InputError unless ``warped`` fits a model with ``warp_dim`` warp channels (0 = none:
    ``warped`` must be None) and, when given, latents of ``shape`` ``(B, C, T, h, w)``."""
    if warp_dim and warped is None:
        raise InputError(
            f"this model is warp-conditioned ({warp_dim} warp channels, stage.warp): it needs "
            "the reference warped to every frame's pose (warped=warp_condition(...))"
        )
    if not warp_dim and warped is not None:
        raise InputError(
            "warped given, but this model has no warp channels (it was not trained with stage.warp)"
        )
    if warped is None or shape is None:
        return
    expected = (shape[0], warp_dim, *shape[2:])
    if tuple(warped.shape) != expected:
        raise InputError(f"warped: expected {list(expected)}, got {list(warped.shape)}")
